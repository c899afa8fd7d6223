"""The HTTP front end (Tornado): routes, the inference exchange, and the server's connections.

It decodes requests with ``protocol``, hands them to the model's runner and
encodes the answers; it knows nothing of where or how a model runs.
"""

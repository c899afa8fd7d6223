"""Runners: where a model's hooks run, behind one interface the front ends call.

``inprocess`` runs them on the server's thread pool (or its event loop),
``pool`` in worker processes of the model's own (``worker``, over ``channel``);
both take their requests from a ``batching.RequestQueue``.
"""

"""Wire formats, pure: KServe V1, the Open Inference Protocol (V2), and the OpenAPI document of the routes.

Bytes in, requests out; results in, bytes out. Nothing here does I/O.
"""

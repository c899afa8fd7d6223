"""The transformer role (KServe's ``--predictor_host``): a model whose ``predict`` is another server's.

The plugin pre- and post-processes; the host's own ``predict`` (``hooks.py``)
sends each preprocessed batch to the predictor through a ``PredictorClient``
(``client.py``) over KServe's V1 or V2 REST (``rest.py``) or V2 gRPC
(``over_grpc.py``). A plugin's own ``async def predict`` receives the same
client as its ``predictor`` argument.
"""

from .client import PROTOCOLS, PredictorClient, PredictorSettings, make_client

__all__ = ["PROTOCOLS", "PredictorClient", "PredictorSettings", "make_client"]

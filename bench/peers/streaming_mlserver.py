"""streaming.py's generator on MLServer 1.7: an ``MLModel`` whose ``predict_stream`` yields fixed pieces.

Named by ``mlserver_streaming_repo/pieces/model-settings.json`` and run with MLServer's virtual environment
and bench/peers on PYTHONPATH. Each request gets ``PIECES`` responses, each one ``text_output`` BYTES tensor
holding ``PIECE`` ("tok "), as modelhost's ``streaming_plugins`` yield them; REST ``infer_stream`` sends
each as a server-sent event. MLServer streams only from a model in its own process: its inference pool
(``parallel_workers`` > 0) forwards ``predict`` alone, so a streaming model there answers one response (the
default ``predict_stream`` calls ``predict``); and its GZip middleware buffers a stream. Hence
``"parallel_workers": 0`` and ``"gzip_enabled": false`` in ``mlserver_streaming_repo/settings.json``, as
MLServer's streaming guide asks.
"""

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceResponse

PIECE = "tok "
PIECES = 200


class Pieces(MLModel):
    async def load(self) -> bool:
        return True

    async def predict_stream(self, payloads):
        async for _ in payloads:  # the one request of a REST stream
            break
        for _ in range(PIECES):
            yield InferenceResponse(model_name=self.name,
                                    outputs=[StringCodec.encode_output("text_output", [PIECE])])

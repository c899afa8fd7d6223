"""The comparison's models on MLServer, as ``mlserver.MLModel`` subclasses.

Named by the model-settings.json files under bench/peers/mlserver_repo and run
by compare.py with MLServer's virtual environment and bench/peers on
PYTHONPATH. MLServer runs them in its default inference worker process.
MLServer's REST API has no binary tensor extension, so AlexNet takes the raw
FP32 bytes as one base64 BYTES element, the most compact JSON body it reads.
"""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

import sessions


def respond(request: InferenceRequest, model_name: str, arrays: dict) -> InferenceResponse:
    outputs = [NumpyCodec.encode_output(name=name, payload=array) for name, array in arrays.items()]
    return InferenceResponse(model_name=model_name, id=request.id, outputs=outputs)


class Echo(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return respond(payload, self.name, {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs})


class Gemm(MLModel):
    async def load(self) -> bool:
        self.session = sessions.gemm_session()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = NumpyCodec.decode_input(payload.inputs[0])
        return respond(payload, self.name, {"y": sessions.run(self.session, batch)})


class AlexNet(MLModel):
    async def load(self) -> bool:
        self.session = sessions.alexnet_session()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        [raw] = Base64Codec.decode_input(payload.inputs[0])
        batch = np.frombuffer(raw, dtype=np.float32).reshape(-1, *sessions.IMAGE_SHAPE)
        scores, indices = sessions.top5(sessions.run(self.session, batch))
        return respond(payload, self.name, {"scores": scores, "indices": indices})

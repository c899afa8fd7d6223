"""The comparison's models on KServe's ModelServer, as ``kserve.Model`` subclasses.

    python bench/peers/kserve_server.py --http_port N --grpc_port M --enable_latency_logging False|True

Run by compare.py with KServe's virtual environment and bench/peers on
PYTHONPATH. ``predict`` is a plain method, as in KServe's "Deploy Custom
Python Model" guide: KServe calls it on its event loop. Tensors go through
NumPy (``as_numpy``, ``set_data_from_numpy``) because a real model needs them
there; that is the work modelhost does before its echo plugin sees an array.
Over gRPC the same ``predict`` gets the ``InferRequest`` KServe decodes from
the ModelInferRequest.
"""

import base64
import copy
import os

import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid

import sessions


def respond(request: InferRequest, model_name: str, arrays: dict) -> InferResponse:
    outputs = []
    for name, array in arrays.items():
        output = InferOutput(name=name, shape=list(array.shape), datatype=from_np_dtype(array.dtype))
        output.set_data_from_numpy(array, binary_data=False)
        outputs.append(output)
    # KServe requires a response id; its own examples make one up when the request has none.
    return InferResponse(response_id=request.id or generate_uuid(), model_name=model_name, infer_outputs=outputs)


class Echo(kserve.Model):
    def load(self):
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, dict):  # V1: the parsed JSON body
            return {"predictions": payload["instances"]}
        return respond(payload, self.name, {tensor.name: tensor.as_numpy() for tensor in payload.inputs})


class Gemm(kserve.Model):
    def load(self):
        self.session = sessions.gemm_session()
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        return respond(payload, self.name, {"y": sessions.run(self.session, payload.inputs[0].as_numpy())})


class AlexNet(kserve.Model):
    def load(self):
        self.session = sessions.alexnet_session()
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        tensor = payload.inputs[0]
        if tensor.datatype == "BYTES":
            # The raw FP32 bytes as one base64 element: the JSON body that avoids KServe's binary decoding,
            # which turns the tensor into a Python list of floats and back.
            batch = np.frombuffer(base64.b64decode(tensor.data[0]), dtype=np.float32).reshape(-1, *sessions.IMAGE_SHAPE)
        else:
            batch = tensor.as_numpy()
        scores, indices = sessions.top5(sessions.run(self.session, batch))
        return respond(payload, self.name, {"scores": scores, "indices": indices})


def main() -> None:
    # KServe's own log configuration, with its per-request loggers off unless access logs are
    # asked for: uvicorn's access log (uvicorn skips it entirely when the logger is above INFO) and
    # kserve.trace, where KServe's timing middleware writes two lines per request whatever
    # --enable_latency_logging says. Over gRPC, its LoggingInterceptor writes a "grpc method: ..." line at
    # INFO per call to the kserve logger itself, which goes to WARNING too, as modelhost runs at
    # --log-level WARNING: its start-up lines go with it.
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    if not os.environ.get("BENCH_ACCESS_LOGS"):
        for name in ("uvicorn.access", "kserve.trace", "kserve"):
            config["loggers"][name]["level"] = "WARNING"
    configure_logging(config)
    models = [Echo("echo"), Gemm("gemm"), AlexNet("custom-model")]
    for model in models:
        model.load()
    kserve.ModelServer().start(models)


if __name__ == "__main__":
    main()

"""KServe's own model server (``kserve.Model``) as a peer of modelhost's transformer role, for
``test_transformer_kserve.py``; a script, run in its own process (KServe's protobuf messages and
tritonclient's cannot share one process's default pool).

    python tests/kserve_peers.py --role predictor --model_name m --http_port P --grpc_port G
    python tests/kserve_peers.py --role transformer --model_name m --http_port P --grpc_port G \\
        --predictor_host HOST:PORT --predictor_protocol v1|v2|grpc-v2

The predictor doubles its inputs; the transformer adds one to them in preprocess and leaves predict to
KServe's default, which calls the predictor named by ``--predictor_host``. Both parse KServe's own flags
(``kserve.model_server.parser`` as the parent), as KServe's docs do for a custom transformer. KServe
binds 0.0.0.0 (HTTP) and [::] (gRPC) with no flag to change it, so these listen on every interface.
"""

import argparse

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.errors import InvalidInput
from kserve.predictor_config import PredictorConfig
from kserve.utils.utils import generate_uuid


def double(array: np.ndarray) -> np.ndarray:
    if (array < 0).any():
        raise InvalidInput("negative inputs")  # KServe answers 400 (gRPC: INVALID_ARGUMENT)
    return array * 2


class Doubler(Model):
    """Doubles every input: V1 ``{"instances": ...}`` to ``{"predictions": ...}``, V2 outputs named as the inputs;
    refuses negative inputs, as a predictor's own error."""

    def __init__(self, name: str):
        super().__init__(name)
        self.ready = True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            outputs = []
            for tensor in payload.inputs:
                output = InferOutput(tensor.name, list(tensor.shape), tensor.datatype)
                output.set_data_from_numpy(double(tensor.as_numpy()), binary_data=False)
                outputs.append(output)
            return InferResponse(payload.id or generate_uuid(), self.name, outputs,
                                 use_binary_outputs=payload.use_binary_outputs)
        return {"predictions": double(np.asarray(payload["instances"])).tolist()}


class PlusOne(Model):
    """Adds one to every input in preprocess; predict is KServe's own call to the predictor."""

    def __init__(self, name: str):
        super().__init__(name)
        self.ready = True

    def preprocess(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            for tensor in payload.inputs:
                tensor.set_data_from_numpy(tensor.as_numpy() + 1, binary_data=False)
            return payload
        return {"instances": (np.asarray(payload["instances"]) + 1).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--role", choices=["predictor", "transformer"], required=True)
    args, _ = parser.parse_known_args()
    config = PredictorConfig(
        predictor_host=args.predictor_host,
        predictor_protocol=args.predictor_protocol,
        predictor_use_ssl=args.predictor_use_ssl,
        predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
        predictor_request_retries=args.predictor_request_retries,
        predictor_health_check=args.enable_predictor_health_check,
    )
    model = (Doubler if args.role == "predictor" else PlusOne)(args.model_name)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, predictor_config=config).start([model])

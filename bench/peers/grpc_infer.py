"""The gRPC side of the cases: the frame h2load sends, and one real call with it to check the answer.

The messages are modelhost's (``grpc_v2.messages()``, Triton's layout of
``inference.proto``), which KServe's and MLServer's services share on the wire.
"""

from pathlib import Path

import grpc
import numpy as np
from modelhost.protocol import grpc_v2, tensors

MODEL_INFER = f"/{grpc_v2.SERVICE}/ModelInfer"
# What a gRPC client sends with every call; h2load needs to be told.
HEADERS = {"content-type": "application/grpc", "te": "trailers"}
PREFIX = 5  # a gRPC frame's: 1 byte "compressed" (0: no), the message's length in 4 bytes, big-endian


def frame(model: str, name: str, array: np.ndarray) -> bytes:
    """A ModelInferRequest with the tensor in ``raw_input_contents``, framed as on the wire."""
    request = grpc_v2.messages().ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=tensors.datatype_of(array), shape=array.shape)
    request.raw_input_contents.append(array.tobytes())
    message = request.SerializeToString()
    return b"\0" + len(message).to_bytes(PREFIX - 1, "big") + message


def infer(address: str, body: Path) -> tuple[dict, int]:
    """One call with the very frame h2load sends: the answer as a V2 JSON document, which the case checks as
    it checks a REST answer, and the length of the answer's frame, by which h2load.py counts whole answers.

    Raises grpc.RpcError when the call fails, ValueError when an output cannot be read.
    """
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(MODEL_INFER)  # no (de)serializers: bytes in, bytes out
        # wait_for_ready: a server's gRPC port may open a moment after its HTTP one says ready.
        answer = call(body.read_bytes()[PREFIX:], timeout=30, wait_for_ready=True)
    return document(grpc_v2.messages().ModelInferResponse.FromString(answer)), PREFIX + len(answer)


def document(response) -> dict:
    """The outputs, from raw contents (as modelhost answers) or typed ones, whichever the server sent."""
    outputs = []
    for index, tensor in enumerate(response.outputs):
        try:
            if response.raw_output_contents:
                data = np.frombuffer(response.raw_output_contents[index], dtype=tensors.DTYPES[tensor.datatype])
            else:
                data = np.array(getattr(tensor.contents, grpc_v2.CONTENTS[tensor.datatype]))
        except (KeyError, IndexError):  # a datatype without a dtype or a contents field, raw contents missing
            raise ValueError(f"output {tensor.name!r} ({tensor.datatype}) cannot be read from the answer") from None
        outputs.append({"name": tensor.name, "data": data})
    return {"outputs": outputs}

"""The cases: which servers answer which request body, and what a right answer holds.

Bodies are written once into files that wrk's Lua script reads as bytes, and
h2load sends as they are (a gRPC case's body is one framed ModelInferRequest).
The expected outputs come from ONNX Runtime in this process, so the pre-flight
check also proves the servers run equivalent models.
"""

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import grpc_infer, sessions

JSON = {"Content-Type": "application/json"}
# Sixteen values exact in FP32, so every server writes back the very numbers it was sent.
X = (np.arange(16, dtype=np.float32) / 4 - 2).reshape(1, 16)
IMAGE = np.random.default_rng(0).random((1, *sessions.IMAGE_SHAPE), dtype=np.float32)


@dataclass
class Target:
    server: str  # key of the server answering
    path: str
    body: Path
    headers: dict
    versus: Optional[str] = None  # the modelhost server this row's ratio is taken against; None on modelhost rows
    tag: str = ""  # tells two rows of one server apart, and marks a body other than the case's title says
    payload: str = ""  # that other body, said under the case
    grpc: bool = False  # a unary gRPC call to the server's gRPC port, under h2load, instead of HTTP/1.1 under wrk
    answer_bytes: int = 0  # gRPC: a right answer's frame length, which the preflight learns and h2load.py needs

    @property
    def key(self) -> str:
        return f"{self.server}:{self.tag}" if self.tag else self.server


@dataclass
class Case:
    key: str
    title: str
    concurrencies: tuple
    targets: list
    expected: tuple  # (output name, values): V1 rows compare "predictions", V2 the named output

    def answer_is_right(self, document: dict) -> bool:
        name, values = self.expected
        try:
            got = document["predictions"] if "predictions" in document else next(
                output["data"] for output in document["outputs"] if output["name"] == name)
            return np.allclose(np.ravel(got), np.ravel(values), rtol=1e-4, atol=1e-4)
        except (KeyError, StopIteration, TypeError, ValueError):
            return False


def v2_json(name: str, array: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32",
                                   "data": array.ravel().tolist()}]}).encode()


def v2_binary(name: str, array: np.ndarray) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": array.nbytes}}]}).encode()
    return header + array.tobytes(), {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))}


def v2_base64(name: str, array: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(array.tobytes()).decode()]}]}).encode()


def build(folder: Path, concurrencies: tuple, alexnet_concurrencies: tuple) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    v1 = write("echo-v1.json", json.dumps({"instances": X.tolist()}).encode())
    small = write("x-v2.json", v2_json("x", X))
    binary, binary_headers = v2_binary("input", IMAGE)
    image = write("image-v2.bin", binary)
    image64 = write("image-v2-base64.json", v2_base64("input", IMAGE))
    echo_grpc = write("echo-grpc.bin", grpc_infer.frame("echo", "x", X))
    gemm_y = sessions.run(sessions.gemm_session(), X)
    scores, _ = sessions.top5(sessions.run(sessions.alexnet_session(), IMAGE))
    base64_body = f"the FP32 bytes base64-encoded as one V2 JSON BYTES element, {image64.stat().st_size:,} bytes"
    echo_v2, gemm_v2 = "/v2/models/echo/infer", "/v2/models/gemm/infer"
    alexnet = "/v2/models/custom-model/infer"
    # Next to each gRPC row, the same server's REST row, interleaved with it: mh/peer then reads gRPC / REST.
    rest = f"POST {echo_v2} with the V2 JSON body of the echo V2 cases ({small.stat().st_size} bytes)"
    grpc_title = (f"echo, gRPC ModelInfer FP32 [1,16] in raw_input_contents ({echo_grpc.stat().st_size} bytes "
                  "framed), model in")
    return [
        Case("echo-v1", "echo, V1 JSON {\"instances\": [[16 floats]]}", concurrencies, [
            Target("modelhost", "/v1/models/echo:predict", v1, JSON),
            Target("kserve", "/v1/models/echo:predict", v1, JSON, versus="modelhost"),
            Target("bare", "/v1/models/echo:predict", v1, JSON, versus="modelhost"),
        ], ("predictions", X)),
        Case("echo-v2", "echo, V2 JSON FP32 [1,16], model in the server process", concurrencies, [
            Target("modelhost", echo_v2, small, JSON),
            Target("kserve", echo_v2, small, JSON, versus="modelhost"),
        ], ("x", X)),
        Case("echo-v2-worker", "echo, V2 JSON FP32 [1,16], model in a worker process", concurrencies, [
            Target("modelhost-worker", echo_v2, small, JSON),
            Target("mlserver", echo_v2, small, JSON, versus="modelhost-worker"),
        ], ("x", X)),
        Case("echo-grpc", f"{grpc_title} the server process", concurrencies, [
            Target("modelhost", grpc_infer.MODEL_INFER, echo_grpc, grpc_infer.HEADERS, grpc=True),
            Target("kserve", grpc_infer.MODEL_INFER, echo_grpc, grpc_infer.HEADERS, versus="modelhost", grpc=True),
            Target("modelhost", echo_v2, small, JSON, versus="modelhost", tag="REST V2", payload=rest),
        ], ("x", X)),
        Case("echo-grpc-worker", f"{grpc_title} a worker process", concurrencies, [
            Target("modelhost-worker", grpc_infer.MODEL_INFER, echo_grpc, grpc_infer.HEADERS, grpc=True),
            Target("mlserver", grpc_infer.MODEL_INFER, echo_grpc, grpc_infer.HEADERS, versus="modelhost-worker",
                   grpc=True),
            Target("modelhost-worker", echo_v2, small, JSON, versus="modelhost-worker", tag="REST V2", payload=rest),
        ], ("x", X)),
        Case("gemm", "Gemm 16->4 on ONNX Runtime (1 thread), V2 JSON FP32 [1,16]", concurrencies, [
            Target("modelhost", gemm_v2, small, JSON),
            Target("modelhost-worker", gemm_v2, small, JSON),
            Target("kserve", gemm_v2, small, JSON, versus="modelhost"),
            Target("mlserver", gemm_v2, small, JSON, versus="modelhost-worker"),
        ], ("y", gemm_y)),
        Case("alexnet", f"AlexNet on ONNX Runtime, V2 binary FP32 [1,3,224,224] ({len(binary):,} bytes), top-5 out",
             alexnet_concurrencies, [
            Target("modelhost", alexnet, image, binary_headers),
            Target("modelhost-worker", alexnet, image, binary_headers),
            Target("modelhost-batching", alexnet, image, binary_headers),
            Target("kserve", alexnet, image, binary_headers, versus="modelhost"),
            Target("kserve", alexnet, image64, JSON, versus="modelhost", tag="base64", payload=base64_body),
            Target("mlserver", alexnet, image64, JSON, versus="modelhost-worker", tag="base64", payload=base64_body),
        ], ("scores", scores)),
    ]

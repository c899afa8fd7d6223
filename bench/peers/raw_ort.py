"""The models as ONNX files, and ONNX Runtime's own throughput on them: the limit for any server."""

import os
import time
from pathlib import Path

import numpy as np
from modelhost_alexnet import network
from onnx import TensorProto, helper, numpy_helper

GEMM_NAME = "gemm-16x4-seed0.onnx"


def point_servers_at(models: Path) -> None:
    """Servers started from here on read the models' ONNX files under ``models``: the sample builds AlexNet into
    MODELHOST_CACHE_DIR once, and every server (and ``peers.sessions``) reads that one file, and the Gemm's."""
    from . import sessions
    os.environ["MODELHOST_CACHE_DIR"] = str(models)
    os.environ[sessions.ALEXNET_ENV] = str(network.model_path())
    os.environ[sessions.GEMM_ENV] = str(gemm_path(models))


def gemm_path(models: Path) -> Path:
    """A 16->4 Gemm with seed-fixed weights, built once into the cache."""
    path = models / GEMM_NAME
    if not path.is_file():
        rng = np.random.default_rng(0)
        weight = numpy_helper.from_array(rng.standard_normal((4, 16), dtype=np.float32), "weight")
        bias = numpy_helper.from_array(rng.standard_normal(4, dtype=np.float32), "bias")
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "weight", "bias"], ["y"], transB=1)], "gemm-16x4",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
            initializer=[weight, bias],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", network.OPSET)])
        model.ir_version = network.IR_VERSION
        # The sample's atomic write: a half-written file is never mistaken for the model.
        network.write_atomically(model.SerializeToString(), path)
    return path


def throughput(session, batch: np.ndarray, seconds: float) -> float:
    """Items (rows of the batch) per second of back-to-back ``session.run`` calls."""
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(3):
        session.run(None, feed)
    calls, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        session.run(None, feed)
        calls += 1
    return calls * len(batch) / elapsed

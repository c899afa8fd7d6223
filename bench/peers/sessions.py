"""ONNX Runtime sessions opened the same way by every server in the comparison.

Imported as a top-level module by the servers (bench/peers is on their
PYTHONPATH) and as ``peers.sessions`` by compare.py, so the raw figures use
exactly the options the servers use. Only NumPy and onnxruntime are needed:
the peers' virtual environments have nothing else of ours.
"""

import os

import numpy as np
import onnxruntime as ort

GEMM_ENV, ALEXNET_ENV = "BENCH_GEMM_ONNX", "BENCH_ALEXNET_ONNX"
IMAGE_SHAPE = (3, 224, 224)  # one AlexNet input, preprocessed
TOP = 5


def open_session(path, threads=None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def gemm_session() -> ort.InferenceSession:
    # One intra-op thread: a 16x4 product is far too small to split, and spinning threads would only burn CPU.
    return open_session(os.environ[GEMM_ENV], threads=1)


def alexnet_session() -> ort.InferenceSession:
    # ONNX Runtime's default threads, as the sample plugin opens it (MODELHOST_ALEXNET_THREADS unset).
    return open_session(os.environ[ALEXNET_ENV])


def run(session: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """The session's single output for its single input."""
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def top5(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (FP32) and class indices (INT64) of the five largest logits, as the sample plugin answers."""
    indices = np.argsort(-logits, axis=1, kind="stable")[:, :TOP]
    return np.take_along_axis(logits, indices, axis=1).astype(np.float32), indices.astype(np.int64)

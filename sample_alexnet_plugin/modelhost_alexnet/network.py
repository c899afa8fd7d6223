"""The AlexNet graph, built from code with untrained fixed-seed weights, and where it is kept.

No pretrained weights can be fetched from here, so the network is built in
torchvision's layout with He-scaled random weights: the logits are finite and
differ from image to image, but they mean nothing. ``MODELHOST_ALEXNET_MODEL``
points the plugin at a real AlexNet ONNX file instead.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# The seed and layout are part of the name: a cached file built differently is never mistaken for this one.
CACHE_NAME = "alexnet-untrained-seed0-v1.onnx"
INPUT, OUTPUT = "input", "output"
# Pinned low so a cached file loads in older ONNX Runtimes too.
OPSET, IR_VERSION = 17, 8

# (name, out_channels, in_channels, kernel, stride, padding, max-pool after it)
CONVS = [
    ("features.0", 64, 3, 11, 4, 2, True),
    ("features.3", 192, 64, 5, 1, 2, True),
    ("features.6", 384, 192, 3, 1, 1, False),
    ("features.8", 256, 384, 3, 1, 1, False),
    ("features.10", 256, 256, 3, 1, 1, True),
]
CLASSES = 1000  # ImageNet's
# (name, out_features, in_features); torchvision's Dropout layers do nothing at inference.
LINEARS = [
    ("classifier.1", 4096, 256 * 6 * 6),
    ("classifier.4", 4096, 4096),
    ("classifier.6", CLASSES, 4096),
]


def cache_dir() -> Path:
    return Path(os.environ.get("MODELHOST_CACHE_DIR") or Path.home() / ".cache" / "modelhost")


def model_path() -> Path:
    """The ONNX file to serve: ``$MODELHOST_ALEXNET_MODEL``, else the built network, built on first use."""
    chosen = os.environ.get("MODELHOST_ALEXNET_MODEL")
    if chosen:
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"MODELHOST_ALEXNET_MODEL is {chosen!r}, which is not a file")
        return Path(chosen)
    path = cache_dir() / CACHE_NAME
    if not path.is_file():
        write_atomically(build().SerializeToString(), path)
    return path


def write_atomically(data: bytes, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename it into place.

    Readers see either no file or a whole one, even when several servers
    build at once: each renames its own complete copy over the others.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file private; the cache is as readable as any downloaded model.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def build(seed: int = 0) -> onnx.ModelProto:
    """AlexNet as in torchvision: float32 [N,3,224,224] -> [N,1000] logits."""
    rng = np.random.default_rng(seed)
    weights, nodes = [], []
    x = INPUT

    def parameter(name, shape, fan_in):
        # He (Kaiming) normal scaling keeps activations near unit variance through the ReLUs.
        array = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        weights.append(numpy_helper.from_array(array, f"{name}.weight"))
        weights.append(numpy_helper.from_array(np.zeros(shape[0], np.float32), f"{name}.bias"))
        return [f"{name}.weight", f"{name}.bias"]

    def node(op, inputs, name, output=None, **attributes):
        nodes.append(helper.make_node(op, inputs, [output or name], name=name, **attributes))
        return output or name

    for name, out_channels, in_channels, kernel, stride, padding, pool in CONVS:
        params = parameter(name, (out_channels, in_channels, kernel, kernel), in_channels * kernel * kernel)
        x = node("Conv", [x, *params], name, kernel_shape=[kernel, kernel], strides=[stride, stride],
                 pads=[padding] * 4)
        x = node("Relu", [x], f"{name}.relu")
        if pool:
            x = node("MaxPool", [x], f"{name}.pool", kernel_shape=[3, 3], strides=[2, 2])
    # AdaptiveAvgPool2d((6, 6)) meets a 6x6 map at 224 input: a 1x1 average pool is exactly it.
    x = node("AveragePool", [x], "avgpool", kernel_shape=[1, 1])
    x = node("Flatten", [x], "flatten", axis=1)
    for name, out_features, in_features in LINEARS[:-1]:
        x = node("Gemm", [x, *parameter(name, (out_features, in_features), in_features)], name, transB=1)
        x = node("Relu", [x], f"{name}.relu")
    name, out_features, in_features = LINEARS[-1]
    node("Gemm", [x, *parameter(name, (out_features, in_features), in_features)], name, OUTPUT, transB=1)

    graph = helper.make_graph(
        nodes, "alexnet-untrained",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="modelhost-sample-alexnet")
    model.ir_version = IR_VERSION
    return model


def open_session(path: Path, replicas: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU.

    ``MODELHOST_ALEXNET_THREADS`` sets its intra-op threads; otherwise each of
    several replicas gets its share of the cores, because ONNX Runtime's
    threads spin and two replicas with a thread per core each run slower than one.
    """
    options = ort.SessionOptions()
    threads = os.environ.get("MODELHOST_ALEXNET_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"MODELHOST_ALEXNET_THREADS must be a positive integer, got {threads!r}")
        options.intra_op_num_threads = int(threads)
    elif replicas > 1:
        options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // replicas)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

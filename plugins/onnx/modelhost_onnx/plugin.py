"""An ONNX graph on ONNX Runtime: its inputs and outputs, datatypes and dynamic dimensions read from the graph.

Every request is checked against the graph: a V2 request names each of its
inputs with the graph's datatype and a shape the graph takes; V1 instances
are rows of the one input, or objects holding each input's row by name. The
answer is every output of the graph (V1: the one output's rows, or an object
per row when there are several).

``providers`` in ``modelhost.json``, or ``MODELHOST_ONNX_PROVIDERS``
(comma-separated), chooses ONNX Runtime's execution providers; by default
CUDA where ``onnxruntime-gpu`` finds a GPU, else the CPU.
"""

import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from modelhost import InvalidInput, hookimpl
from modelhost.formats import format_options, model_file, replica_threads
from modelhost.tabular import as_text

from . import FORMAT

# ONNX Runtime's element types as the Open Inference Protocol names them, and as NumPy holds them.
DATATYPES = {
    "tensor(float)": ("FP32", np.float32), "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16), "tensor(bool)": ("BOOL", np.bool_),
    "tensor(int8)": ("INT8", np.int8), "tensor(int16)": ("INT16", np.int16),
    "tensor(int32)": ("INT32", np.int32), "tensor(int64)": ("INT64", np.int64),
    "tensor(uint8)": ("UINT8", np.uint8), "tensor(uint16)": ("UINT16", np.uint16),
    "tensor(uint32)": ("UINT32", np.uint32), "tensor(uint64)": ("UINT64", np.uint64),
    "tensor(string)": ("BYTES", np.object_),
}
DATATYPE_OF = {np.dtype(dtype): datatype for datatype, dtype in DATATYPES.values()}
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class Tensor:
    """One of the graph's inputs or outputs: a dimension that is not a number (a name, or none) is -1."""

    name: str
    datatype: str
    dtype: type
    shape: tuple[int, ...]

    @classmethod
    def of(cls, node) -> "Tensor":
        if node.type not in DATATYPES:
            raise ValueError(f"the graph's {node.name!r} is a {node.type}, which modelhost cannot serve")
        datatype, dtype = DATATYPES[node.type]
        return cls(node.name, datatype, dtype, tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape))

    def described(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def checked(self, array: np.ndarray, sent_as: str) -> np.ndarray:
        """``array`` if this input takes it; InvalidInput naming the input otherwise."""
        if sent_as != self.datatype:
            raise InvalidInput(f"input {self.name!r} is {sent_as}; the model takes {self.datatype}")
        fits = array.ndim == len(self.shape) and all(want in (-1, got) for want, got in zip(self.shape, array.shape))
        if not fits:
            raise InvalidInput(f"input {self.name!r} has shape {list(array.shape)}; the model takes "
                               f"{list(self.shape)} (-1: any size)")
        return as_text(self.name, array) if self.datatype == "BYTES" else array  # ONNX Runtime's strings are str


class ONNXModel:
    def __init__(self):
        self.session = None
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []

    @hookimpl
    def load(self, settings, model_dir):
        options = ort.SessionOptions()
        options.intra_op_num_threads = replica_threads(settings["replicas"])
        self.session = ort.InferenceSession(str(model_file(model_dir, FORMAT.files)), options,
                                            providers=chosen_providers(format_options(model_dir)))
        self.inputs = [Tensor.of(node) for node in self.session.get_inputs()]
        self.outputs = [Tensor.of(node) for node in self.session.get_outputs()]
        fixed = [tensor.name for tensor in self.inputs if not tensor.shape or tensor.shape[0] != -1]
        if settings["max_batch_size"] > 1 and fixed:
            raise ValueError(f"max_batch_size is {settings['max_batch_size']}, and the graph's input(s) "
                             f"{', '.join(fixed)} have no batch dimension (a first dimension of any size) to "
                             "gather requests along")

    @hookimpl
    def metadata(self):
        return {"platform": "onnxruntime_onnx", "inputs": [tensor.described() for tensor in self.inputs],
                "outputs": [tensor.described() for tensor in self.outputs]}

    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v1":
            return self.v1_inputs(request.instances)
        sent = {tensor.name for tensor in self.inputs}
        unknown = [name for name in request.inputs if name not in sent]
        if unknown:
            raise InvalidInput(f"the model has no input {', '.join(map(repr, unknown))} (it takes "
                               f"{', '.join(map(repr, sent))})")
        missing = [tensor for tensor in self.inputs if tensor.name not in request.inputs]
        if missing:
            raise InvalidInput("missing input " + ", ".join(
                f"{tensor.name!r} ({tensor.datatype} {list(tensor.shape)})" for tensor in missing))
        return {tensor.name: tensor.checked(request.inputs[tensor.name], v2_datatype(request.inputs[tensor.name]))
                for tensor in self.inputs}

    def v1_inputs(self, instances) -> dict:
        if not instances:
            raise InvalidInput("the request has no instances")
        if len(self.inputs) == 1:
            columns = {self.inputs[0].name: instances}
        elif all(isinstance(instance, dict) for instance in instances):
            columns = {tensor.name: [instance.get(tensor.name) for instance in instances] for tensor in self.inputs}
        else:
            raise InvalidInput(f"the model takes {len(self.inputs)} inputs: send each instance as an object of "
                               f"{', '.join(tensor.name for tensor in self.inputs)}")
        inputs = {}
        for tensor in self.inputs:
            try:
                array = np.asarray(columns[tensor.name], dtype=tensor.dtype)
            except (TypeError, ValueError):
                raise InvalidInput(f"input {tensor.name!r}: the instances are not {tensor.datatype} values of "
                                   f"shape {list(tensor.shape)}") from None
            inputs[tensor.name] = tensor.checked(array, tensor.datatype)
        return inputs

    @hookimpl
    def predict(self, inputs):
        values = self.session.run(None, inputs)
        return {tensor.name: value for tensor, value in zip(self.outputs, values)}

    @hookimpl
    def postprocess(self, outputs, request):
        if request.protocol == "v1" and len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs


def v2_datatype(array: np.ndarray) -> str:
    """The datatype the request sent, as the host decoded it: BYTES as an object array."""
    return DATATYPE_OF.get(array.dtype, str(array.dtype))  # an object array is BYTES, as np.object_ maps


def chosen_providers(options: dict) -> list[str]:
    """The execution providers asked for (``modelhost.json``'s ``providers``, or ``MODELHOST_ONNX_PROVIDERS``),
    else CUDA when this ONNX Runtime has it, and the CPU; ValueError names one this ONNX Runtime lacks."""
    available = ort.get_available_providers()
    asked = options.get("providers") or [p for p in os.environ.get("MODELHOST_ONNX_PROVIDERS", "").split(",") if p]
    if not asked:
        return [provider for provider in PREFERRED_PROVIDERS if provider in available]
    missing = [provider for provider in asked if provider not in available]
    if missing:
        raise ValueError(f"ONNX Runtime here has no {', '.join(missing)} (it has {', '.join(available)})")
    return list(asked)

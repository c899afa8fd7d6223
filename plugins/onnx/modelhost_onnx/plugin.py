"""An ONNX graph on ONNX Runtime: its inputs and outputs, datatypes and dynamic dimensions read from the graph.

Every request is checked against the graph, as the host checks a model's
declared inputs (``modelhost.protocol.declared``): a V2 request names each of
its inputs with the graph's datatype and a shape the graph takes; V1 instances
are rows of the one input, or objects holding each input's row by name. The
answer is every output of the graph (V1: the one output's rows, or an object
per row when there are several).

``providers`` in ``modelhost.json``, or ``MODELHOST_ONNX_PROVIDERS``
(comma-separated), chooses ONNX Runtime's execution providers; by default
CUDA where ``onnxruntime-gpu`` finds a GPU, else the CPU.
"""

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnxruntime as ort

from modelhost import InvalidInput, hookimpl
from modelhost.formats import format_options, model_file, replica_threads
from modelhost.protocol.declared import DeclaredInputs
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

    def taken(self, array: np.ndarray) -> np.ndarray:
        """A checked input as ONNX Runtime takes it: its strings are str."""
        return as_text(self.name, array) if self.datatype == "BYTES" else array


class ONNXModel:
    def __init__(self):
        self.session = None
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.declared: Optional[DeclaredInputs] = None

    @hookimpl
    def load(self, settings, model_dir):
        options = ort.SessionOptions()
        options.intra_op_num_threads = replica_threads(settings["replicas"])
        self.session = ort.InferenceSession(str(model_file(model_dir, FORMAT.files)), options,
                                            providers=chosen_providers(format_options(model_dir)))
        self.inputs = [Tensor.of(node) for node in self.session.get_inputs()]
        self.outputs = [Tensor.of(node) for node in self.session.get_outputs()]
        self.declared = DeclaredInputs.of({"inputs": [tensor.described() for tensor in self.inputs]})
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
        inputs = self.v1_inputs(request.instances) if request.protocol == "v1" else request.inputs
        if self.declared is not None:
            self.declared.check(inputs)
        return {tensor.name: tensor.taken(inputs[tensor.name]) for tensor in self.inputs}

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
            inputs[tensor.name] = array
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

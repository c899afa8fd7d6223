"""The tensors a model declares in its ``metadata``, held to: V2 inputs checked, outputs compared.

What ``GET /v2/models/NAME`` tells clients is a contract, as a Triton model's
configuration is: an input the model does not declare, a declared input
missing (unless declared ``"optional": true``, as Triton's configuration
says), another datatype, or a shape that does not fit (-1: a dimension of
any size) is refused with 400 naming the input, before the plugin runs.
``hookspecs.metadata`` states which requests the host checks; a plugin with
a ``preprocess`` of its own may check with ``DeclaredInputs`` itself (the
ONNX format's plugin does). Outputs that differ from their declaration are
the plugin's to fix: the host answers them and says so in its log.

A declaration is read once, when the model loads: checking a request costs a
comparison of its input names and, for each input, of a dtype and a shape.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InvalidInput, PluginLoadError, quoted, quoted_names
from .tensors import DTYPES, datatype_of

ANY_SIZE = -1
DATATYPE_NAMES = [*DTYPES, "BYTES"]
OBJECT = np.dtype(object)  # BYTES, as a decoded request holds it


@dataclass(frozen=True)
class DeclaredTensor:
    """One declared input or output; what its declaration leaves out (datatype, shape) is not checked."""

    name: str
    datatype: Optional[str] = None
    shape: Optional[tuple[int, ...]] = None
    optional: bool = False
    # Made once from the above, so that a tensor that fits costs two comparisons: the dtype of that datatype, as
    # a decoded request holds it, and the dimensions the shape fixes and their sizes.
    dtype: Optional[np.dtype] = field(init=False, compare=False)
    fixed_at: tuple[int, ...] = field(init=False, compare=False)
    fixed: tuple[int, ...] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "dtype", None if self.datatype is None else DTYPES.get(self.datatype, OBJECT))
        at = tuple(index for index, size in enumerate(self.shape or ()) if size != ANY_SIZE)
        object.__setattr__(self, "fixed_at", at)
        object.__setattr__(self, "fixed", tuple((self.shape or ())[index] for index in at))

    @classmethod
    def read(cls, described: object, kind: str, index: int) -> "DeclaredTensor":
        """The ``index``-th ``kind`` ("input", "output") from the metadata hook's list; PluginLoadError says what in
        it is not a declaration."""
        if not isinstance(described, dict) or not isinstance(described.get("name"), str):
            raise PluginLoadError(f"{kind} {index} with no string 'name'")
        name = described["name"]
        what = f"{kind} {name!r}"
        datatype, shape, optional = (described.get(key) for key in ("datatype", "shape", "optional"))
        if datatype is not None and datatype not in DATATYPE_NAMES:
            raise PluginLoadError(f"{what} with datatype {datatype!r} (known: {', '.join(DATATYPE_NAMES)})")
        if shape is not None and not (isinstance(shape, list) and all(
                isinstance(size, int) and not isinstance(size, bool) and size >= ANY_SIZE for size in shape)):
            raise PluginLoadError(f"{what} with shape {shape!r} (integers, -1 for any size)")
        if optional is not None and not isinstance(optional, bool):
            raise PluginLoadError(f"{what} with optional {optional!r} (true or false)")
        return cls(name, datatype, None if shape is None else tuple(shape), bool(optional))

    def difference(self, array: np.ndarray, declares: str) -> str:
        """How ``array`` differs from this declaration, as ``is ...; <declares> ...``; "" when it fits."""
        # A BYTES output may be a str or bytes array: it differs only if it is no BYTES at all.
        if self.dtype is not None and array.dtype != self.dtype and datatype_of(array) != self.datatype:
            return f"is {datatype_of(array)}; {declares} {self.datatype}"
        shape = array.shape
        if self.shape is not None and (len(shape) != len(self.shape)
                                       or tuple(map(shape.__getitem__, self.fixed_at)) != self.fixed):
            return (f"has shape {list(shape)}; {declares} {list(self.shape)}"
                    f"{' (-1: any size)' if ANY_SIZE in self.shape else ''}")
        return ""

    def __str__(self) -> str:
        shape = "any shape" if self.shape is None else list(self.shape)
        return f"{self.name!r} ({self.datatype or 'any datatype'} {shape})"


def declared(metadata: dict, key: str) -> tuple[DeclaredTensor, ...]:
    """The metadata's ``inputs`` or ``outputs``, read; PluginLoadError says what in them is no declaration."""
    described = metadata.get(key) or []
    if not isinstance(described, list):
        raise PluginLoadError(f"the metadata hook declares {key!r} that are not a list of tensors")
    tensors = []
    for index, tensor in enumerate(described):
        try:
            tensors.append(DeclaredTensor.read(tensor, key[:-1], index))
        except PluginLoadError as problem:
            raise PluginLoadError(f"the metadata hook declares {problem}") from None
    names = [tensor.name for tensor in tensors]
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise PluginLoadError(f"the metadata hook declares {key[:-1]} {twice!r} twice")
    return tuple(tensors)


@dataclass(frozen=True)
class DeclaredInputs:
    """A model's declared inputs, which a V2 request's tensors must be."""

    tensors: tuple[DeclaredTensor, ...]
    names: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "names", frozenset(tensor.name for tensor in self.tensors))

    @classmethod
    def of(cls, metadata: dict) -> Optional["DeclaredInputs"]:
        """The inputs the metadata declares; None when it declares none, and no request is checked."""
        tensors = declared(metadata, "inputs")
        return cls(tensors) if tensors else None

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """InvalidInput naming the first input that is not as declared, or the declared input missing."""
        if inputs.keys() != self.names:
            self.check_names(inputs)
        for tensor in self.tensors:
            array = inputs.get(tensor.name)
            if array is not None:
                problem = tensor.difference(array, "the model takes")
                if problem:
                    raise InvalidInput(f"input {tensor.name!r} {problem}")

    def check_names(self, inputs: dict[str, np.ndarray]) -> None:
        unknown = [name for name in inputs if name not in self.names]
        if unknown:
            raise InvalidInput(f"the model has no input {quoted_names(unknown)} (it takes "
                               f"{', '.join(repr(tensor.name) for tensor in self.tensors)})")
        missing = [tensor for tensor in self.tensors if tensor.name not in inputs and not tensor.optional]
        if missing:
            raise InvalidInput(f"missing input {', '.join(map(str, missing))}")


@dataclass(frozen=True)
class DeclaredOutputs:
    """A model's declared outputs, which its answers are compared with."""

    by_name: dict[str, DeclaredTensor]

    @classmethod
    def of(cls, metadata: dict) -> Optional["DeclaredOutputs"]:
        """The outputs the metadata declares; None when it declares none, and no answer is compared."""
        tensors = declared(metadata, "outputs")
        return cls({tensor.name: tensor for tensor in tensors}) if tensors else None

    def difference(self, outputs: dict[str, np.ndarray]) -> str:
        """How the first output that is not as declared differs; "" when all are. A declared output left out is
        no difference: a model may answer only those a request asks for."""
        for name, array in outputs.items():
            tensor = self.by_name.get(name)
            if tensor is None:
                declares = ", ".join(map(repr, self.by_name))
                return f"output {quoted(name)} is not declared (its metadata declares {declares})"
            problem = tensor.difference(array, "its metadata declares")
            if problem:
                return f"output {quoted(name)} {problem}"
        return ""

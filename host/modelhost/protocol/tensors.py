"""Tensors of the Open Inference Protocol: datatypes, JSON data and raw binary data."""

import math
import struct

import numpy as np

from ..errors import InvalidInput, PluginError, quoted
from .limits import DEFAULT_LIMITS, RequestLimits

DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = {dtype: name for name, dtype in DTYPES.items()}
# Which kinds of JSON-parsed NumPy data each datatype accepts without losing meaning.
ACCEPTED_KINDS = {"BOOL": "b", "INT": "iu", "UINT": "iu", "FP": "iuf"}
LENGTH_PREFIX = struct.Struct("<I")
FEW_ELEMENTS = 64  # BYTES tensors up to this many elements are encoded by a plain join
MAX_DIMENSIONS = 64  # NumPy 2's own limit; a longer shape is refused before its list is quoted anywhere


def datatype_of(array: np.ndarray) -> str:
    """The datatype of an array that ``check_output`` accepted."""
    return "BYTES" if array.dtype.kind in "OSU" else DATATYPES[array.dtype.newbyteorder("<")]


def check_output(name: str, array: np.ndarray) -> None:
    """Raise ValueError, saying what the output is, unless it is a tensor of one of the protocol's datatypes.

    BYTES elements are ``bytes`` or ``str``; a NumPy object array holding anything else (a ``set``, a
    DataFrame's mixed columns, an arbitrary object) is no tensor, however NumPy stores it.
    """
    if array.dtype.kind == "O":
        odd = next((element for element in array.reshape(-1) if not isinstance(element, (bytes, str))), None)
        if odd is not None:
            raise ValueError(f"output {quoted(name)} holding a {type(odd).__name__} ({_short(odd)}): a tensor holds "
                             "numbers, booleans, str or bytes")
    elif array.dtype.kind not in "SU" and array.dtype.newbyteorder("<") not in DATATYPES:
        raise ValueError(f"output {quoted(name)} of dtype {array.dtype}, which the protocol cannot carry")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_datatype(name: str, datatype: object) -> str:
    if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in DTYPES):
        known = ", ".join([*DTYPES, "BYTES"])
        if datatype is None or datatype == "":  # left out: absent from JSON, gRPC's empty default
            raise InvalidInput(f"input {quoted(name)}: 'datatype' is required (one of {known})")
        raise InvalidInput(f"input {quoted(name)}: unknown datatype {quoted(datatype)} (known: {known})")
    return datatype


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise InvalidInput(f"input {quoted(name)}: shape must be a list of non-negative integers, got {quoted(shape)}")
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidInput(f"input {quoted(name)}: shape has {len(shape)} dimensions, more than {MAX_DIMENSIONS}")
    return tuple(shape)


def from_json(name: str, datatype: str, shape: tuple[int, ...], data: object,
              limits: RequestLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A tensor from its JSON data, nested or flat, checked against datatype and shape."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {quoted(name)}: data must be a JSON array")
    if datatype == "BYTES":
        limits.check_bytes_elements(name, math.prod(shape))
    try:
        array = np.asarray(data, dtype=object if datatype == "BYTES" else None)
    except ValueError:
        raise InvalidInput(f"input {quoted(name)}: data is not a rectangular array") from None
    if array.size != math.prod(shape):
        raise InvalidInput(
            f"input {quoted(name)}: shape {list(shape)} holds {math.prod(shape)} elements, data has {array.size}"
        )
    if datatype == "BYTES":
        return shaped(name, _bytes_from_json(name, array), shape)
    return shaped(name, _numbers_from_json(name, datatype, data, array), shape)


def shaped(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` reshaped; InvalidInput for a shape NumPy cannot make."""
    try:
        return array.reshape(shape)
    except ValueError:  # NumPy's limits on dimensions and sizes hold even for an empty tensor: [0, 2**63]
        raise InvalidInput(f"input {quoted(name)}: no array can have shape {list(shape)}") from None


def _bytes_from_json(name: str, array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    try:
        flat[:] = list(map(str.encode, flat))  # one C loop, where a Python one held the event loop for seconds
    except (TypeError, UnicodeEncodeError):
        odd = next(element for element in flat if not isinstance(element, str) or not _encodes(element))
        raise InvalidInput(f"input {quoted(name)}: BYTES data must be UTF-8 strings, got {quoted(odd)}") from None
    return flat


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \u escapes can spell
        return False


def _numbers_from_json(name: str, datatype: str, data: list, array: np.ndarray) -> np.ndarray:
    dtype = DTYPES[datatype]
    if dtype.kind in "iu" and array.dtype.kind in "fO" and _all_integers(data):
        # NumPy infers float64 or object for integers past int64's range; keep them exact.
        array = np.asarray(data, dtype=object)
    elif array.size and array.dtype.kind not in ACCEPTED_KINDS[datatype.rstrip("0123456789")]:
        raise InvalidInput(f"input {quoted(name)}: {datatype} data cannot hold {_describe(array)}")
    if array.size and dtype.kind in "iu":
        limits = np.iinfo(dtype.type)  # type: ignore[type-var]  # an integer dtype, as its kind says
        if array.min() < limits.min or array.max() > limits.max:
            raise InvalidInput(f"input {quoted(name)}: values outside the range of {datatype}")
    return array.astype(dtype, copy=False)


def _all_integers(data: list) -> bool:
    return all(type(value) is int for value in np.asarray(data, dtype=object).reshape(-1))


def _describe(array: np.ndarray) -> str:
    return {"b": "booleans", "f": "fractional numbers", "U": "strings"}.get(
        array.dtype.kind, "values of mixed or non-numeric types"
    )


def from_binary(name: str, datatype: str, shape: tuple[int, ...], raw: memoryview,
                limits: RequestLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A tensor viewed straight from the request's binary section, without a copy."""
    count = math.prod(shape)
    if datatype == "BYTES":
        limits.check_bytes_elements(name, count)
        return shaped(name, _bytes_from_binary(name, raw, count), shape)
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {quoted(name)}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(raw)}"
        )
    return shaped(name, np.frombuffer(raw, dtype=dtype), shape)


def _bytes_from_binary(name: str, raw: memoryview, count: int) -> np.ndarray:
    """The ``count`` elements whose length prefixes must tile ``raw`` exactly; no more are looked for."""
    blob = bytes(raw)  # slicing bytes makes each element at once, where a view would need bytes() as well
    unpack, size, end = LENGTH_PREFIX.unpack_from, LENGTH_PREFIX.size, len(blob)
    elements: list[bytes] = []
    append, offset = elements.append, 0
    for index in range(count):
        if offset + size > end:
            raise InvalidInput(f"input {quoted(name)}: shape holds {count} elements, binary data has {index}"
                               if offset == end else f"input {quoted(name)}: BYTES data ends inside a length prefix")
        (length,) = unpack(blob, offset)
        offset += size
        append(blob[offset:offset + length])
        offset += length
    if offset != end:
        raise InvalidInput(f"input {quoted(name)}: a BYTES element runs past binary_data_size" if offset > end
                           else f"input {quoted(name)}: binary data holds more than the {count} elements of its shape")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def to_json_data(name: str, datatype: str, array: np.ndarray) -> object:
    """The flat row-major data of an output, as JSON-ready values."""
    flat = array.reshape(-1)
    if datatype != "BYTES":
        return flat
    try:
        return [element if isinstance(element, str) else element.decode("utf-8") for element in flat]
    except UnicodeDecodeError:
        raise PluginError(
            f"output {quoted(name)} holds BYTES that are not UTF-8 text; request it with binary_data"
        ) from None


def to_binary(datatype: str, array: np.ndarray) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
    elements = [element.encode("utf-8") if isinstance(element, str) else bytes(element)
                for element in array.reshape(-1)]
    if len(elements) <= FEW_ELEMENTS:
        return b"".join(part for element in elements for part in (LENGTH_PREFIX.pack(len(element)), element))
    # Many: the prefixes and the joined elements laid out by NumPy, not a pair of Python objects per element.
    lengths = np.fromiter(map(len, elements), dtype=np.int64, count=len(elements))
    prefixes_at = np.cumsum(lengths + LENGTH_PREFIX.size) - lengths - LENGTH_PREFIX.size
    laid_out = np.empty(int(lengths.sum()) + LENGTH_PREFIX.size * len(elements), dtype=np.uint8)
    is_element = np.ones(laid_out.size, dtype=bool)
    prefix_bytes = lengths.astype("<u4").view(np.uint8).reshape(-1, LENGTH_PREFIX.size)
    for byte in range(LENGTH_PREFIX.size):  # a byte of every prefix at a time: four small index arrays, not one large
        laid_out[prefixes_at + byte] = prefix_bytes[:, byte]
        is_element[prefixes_at + byte] = False
    laid_out[is_element] = np.frombuffer(b"".join(elements), dtype=np.uint8)
    return laid_out.tobytes()

"""Triton's system shared-memory extension, as the wire says it: which tensors are in which regions.

An input or a requested output names a registered region in its parameters
(``shared_memory_region``, ``shared_memory_byte_size`` and optionally
``shared_memory_offset``) instead of carrying its bytes. Decoding makes such an
input a ``SharedInput`` and such an output's place a ``RegionSlice``; the server
then finds the regions (``runtime.shared_memory.Regions.place``) and, where the
model runs, the bytes are read and written (``runtime.shared_memory``). An
output written to a region comes back as a ``SharedOutput``: its description
without its data. BYTES tensors are laid out as in the binary extension, each
element's length (4 bytes, little-endian) before it.
"""

import math
from dataclasses import dataclass, replace
from typing import Any, Optional

from ..errors import InvalidInput, quoted
from . import tensors

REGION, OFFSET, BYTE_SIZE = "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"
EXTENSION = "system_shared_memory"
CUDA_NOT_SUPPORTED = ("CUDA shared memory is not supported on this server (it drives no GPU); use system shared "
                      "memory")


@dataclass(frozen=True)
class RegionSlice:
    """``byte_size`` bytes at ``offset`` into region ``region``; ``key`` (the shared-memory object) and ``start``
    (the offset into it) once the server has found the region."""

    region: str
    offset: int
    byte_size: int
    key: str = ""
    start: int = 0

    def found(self, key: str, region_offset: int) -> "RegionSlice":
        return replace(self, key=key, start=region_offset + self.offset)


@dataclass(frozen=True)
class SharedInput:
    """An input tensor whose bytes are in a region: read where the model runs, not carried in the request."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    place: RegionSlice


@dataclass(frozen=True)
class SharedOutput:
    """An output the model's process wrote into the region the request gave it: its description alone."""

    datatype: str
    shape: tuple[int, ...]
    place: RegionSlice
    byte_size: int  # what was written of the slice

    def parameters(self) -> dict[str, Any]:
        return {REGION: self.place.region, OFFSET: self.place.offset, BYTE_SIZE: self.byte_size}


def region_slice(parameters: dict, what: str) -> Optional[RegionSlice]:
    """The region a tensor's parameters name, or None when they name none; InvalidInput for a partial or
    ill-typed one (Triton's rule: the region and the byte size together, the offset optional)."""
    if REGION not in parameters and BYTE_SIZE not in parameters:
        if OFFSET in parameters:
            raise InvalidInput(f"{what}: {OFFSET} without {REGION} and {BYTE_SIZE}")
        return None
    region, byte_size, offset = parameters.get(REGION), parameters.get(BYTE_SIZE), parameters.get(OFFSET, 0)
    if region is None or byte_size is None:
        raise InvalidInput(f"{what}: {REGION} and {BYTE_SIZE} must be given together")
    if not isinstance(region, str) or not region:
        raise InvalidInput(f"{what}: {REGION} must be a region's name")
    return RegionSlice(region, count(offset, f"{what}: {OFFSET}"), count(byte_size, f"{what}: {BYTE_SIZE}"))


def count(value: Any, what: str) -> int:
    """``value``, an integer of 0 or more; InvalidInput naming ``what`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{what} must be an integer of 0 or more, not {quoted(value)}")
    return value


def shared_input(name: str, datatype: str, shape: tuple[int, ...], parameters: dict,
                 has_data: bool) -> Optional[SharedInput]:
    """The input as a ``SharedInput`` when its parameters put it in a region; None when they do not."""
    what = f"input {quoted(name)}"
    place = region_slice(parameters, what)
    if place is None:
        return None
    if has_data or "binary_data_size" in parameters:  # Triton refuses it too: which would be the tensor?
        raise InvalidInput(f"{what} is in shared memory and carries data too; give one")
    if datatype != "BYTES":
        needed = math.prod(shape) * tensors.DTYPES[datatype].itemsize
        if place.byte_size != needed:
            raise InvalidInput(f"{what}: shape {list(shape)} of {datatype} needs {needed} bytes, "
                               f"{BYTE_SIZE} is {place.byte_size}")
    return SharedInput(name, datatype, shape, place)


def output_places(requested: Optional[dict[str, dict]]) -> dict[str, RegionSlice]:
    """The requested outputs to be written into regions, by name."""
    places = {}
    for name, parameters in (requested or {}).items():
        place = region_slice(parameters, f"output {quoted(name)}")
        if place is not None:
            if parameters.get("binary_data"):
                raise InvalidInput(f"output {quoted(name)} asks for binary data and shared memory; ask for one")
            places[name] = place
    return places


def register_request(body: dict) -> tuple[str, int, int]:
    """A register call's (key, offset, byte_size); InvalidInput names what is missing or ill-typed."""
    key = body.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidInput("'key' must name the shared memory object")
    return key, count(body.get("offset", 0), "'offset'"), count(body.get("byte_size"), "'byte_size'")

"""Triton's system shared memory: the regions clients register, and tensors read from and written to them.

A client creates a POSIX shared-memory object (``shm_open``: a file under
``/dev/shm``), registers a region of it by name (its key, an offset and a byte
size), and names the region in an input's or output's parameters instead of
sending the bytes (``protocol.shared_memory``). ``Regions`` is the server's
record of them; ``Regions.place`` checks a request's slices against it. Where
the model runs (the server process, a worker, a Ray replica on this machine),
``read_inputs`` maps each input's slice and views it as the array the plugin
gets, without a copy, and ``write_outputs`` copies each output into its slice:
the one copy an output costs. Each mapping is the request's own, made by key
and unmapped when its arrays are gone, so a region unregistered (or removed by
its client) while a request reads it stays mapped until that request is done,
and nothing stays mapped between requests.

Only objects directly under ``/dev/shm`` can be named (no other path, no
link). Sizes are checked against the object as it is when a request maps it;
a client that shrinks its object while a model reads it makes that read fault,
which in a worker process costs the worker (it is restarted), and in the
server process the server: serve clients that might from workers.
"""

import dataclasses
import ipaddress
import mmap
import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import InvalidInput, quoted
from ..protocol import tensors
from ..protocol.shared_memory import EXTENSION, RegionSlice, SharedInput, SharedOutput
from ..replies import Reply
from ..request import InferenceRequest

SHM_ROOT = "/dev/shm"
LOOPBACK = "loopback"  # --enable_shared_memory's default: for clients on this machine only


@dataclass(frozen=True)
class RegionStatus:
    """A registered region, as Triton's status call describes it."""

    name: str
    key: str
    offset: int
    byte_size: int


def object_path(key: str) -> str:
    """The file of the shared-memory object ``key`` names (``/name``, as ``shm_open`` takes it)."""
    name = key[1:] if key.startswith("/") else key
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidInput(f"shared memory key {quoted(key)} must name an object directly under {SHM_ROOT}")
    return os.path.join(SHM_ROOT, name)


def mapped(place: RegionSlice, shared: bool) -> memoryview:
    """The slice's bytes, mapped on their own and unmapped once nothing refers to them: ``shared``, writes
    reach the client's object; else they are the process's own (copy-on-write), so that a plugin may change
    its inputs in place, as it may those of a request's body, and the client's bytes stay as they are."""
    if place.byte_size == 0:
        return memoryview(bytearray())
    try:
        fd = os.open(object_path(place.key), (os.O_RDWR if shared else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise InvalidInput(f"shared memory region {quoted(place.region)}: its object {quoted(place.key)} cannot "
                           f"be opened: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or place.start + place.byte_size > info.st_size:
            raise InvalidInput(f"shared memory region {quoted(place.region)}: its object {quoted(place.key)} holds "
                               f"{info.st_size} bytes, too few for the {place.byte_size} bytes at {place.start} "
                               "asked for (it has shrunk since it was registered)")
        aligned = place.start - place.start % mmap.ALLOCATIONGRANULARITY
        # Measured at 64 MB: an output's pages populated at once cost a third of what faulting them in one by one
        # does; an input's would be copied (populating a private mapping writes each page), while read faults
        # map 16 pages at a time.
        mapping = mmap.mmap(fd, place.start + place.byte_size - aligned, offset=aligned,
                            flags=mmap.MAP_SHARED | mmap.MAP_POPULATE if shared else mmap.MAP_PRIVATE)
    finally:
        os.close(fd)
    return memoryview(mapping)[place.start - aligned:]


def read_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The request's inputs with each ``SharedInput`` read: an array over its mapped bytes, or for BYTES, its
    elements."""
    if not any(isinstance(value, SharedInput) for value in inputs.values()):
        return inputs
    return {name: tensors.from_binary(name, value.datatype, value.shape, mapped(value.place, shared=False))
            if isinstance(value, SharedInput) else value for name, value in inputs.items()}


def write_outputs(outputs: dict[str, np.ndarray], places: dict[str, RegionSlice]) -> dict[str, Any]:
    """The outputs with each one the request placed in a region written there, a ``SharedOutput`` in its stead;
    InvalidInput when one does not fit its slice."""
    written: dict[str, Any] = dict(outputs)
    for name, place in places.items():
        array = outputs.get(name)
        if array is None:
            continue  # v2.requested names an output the model does not give
        datatype = tensors.datatype_of(array)
        data = array if datatype != "BYTES" else np.frombuffer(tensors.to_binary(datatype, array), np.uint8)
        if data.nbytes > place.byte_size:
            raise InvalidInput(f"output {quoted(name)} is {data.nbytes} bytes; the {place.byte_size} bytes of "
                               f"region {quoted(place.region)} given for it cannot hold it")
        target = np.frombuffer(mapped(place, shared=True), data.dtype, data.size).reshape(data.shape)
        np.copyto(target, data)
        written[name] = SharedOutput(datatype, tuple(array.shape), place, data.nbytes)
    return written


def written(answer: Any, places: dict[str, RegionSlice]) -> Any:
    """A carried answer (``replies.carried``) with the outputs its request placed in regions written there."""
    if not places:
        return answer
    if isinstance(answer, Reply):
        return dataclasses.replace(answer, payload=write_outputs(answer.payload, places))
    return write_outputs(answer, places)


def is_loopback(peer: str) -> bool:
    """Whether a request's peer (``127.0.0.1``, or gRPC's ``ipv4:127.0.0.1:5000``) is this machine."""
    host = peer
    if host.startswith(("ipv4:", "ipv6:")):
        host = host[5:].rsplit(":", 1)[0].strip("[]")
    elif host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class Regions:
    """The regions registered with one server process, by name; ``enabled`` is --enable_shared_memory (true,
    false, or ``LOOPBACK``: for clients on this machine alone)."""

    enabled: Any = LOOPBACK
    by_name: dict[str, RegionStatus] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # a large request is placed on a thread

    def extensions(self) -> tuple[str, ...]:
        """What server metadata lists of this: the extension, unless it is off."""
        return () if self.enabled is False else (EXTENSION,)

    def allowed(self, peer: str) -> None:
        if self.enabled is True or (self.enabled == LOOPBACK and is_loopback(peer)):
            return
        raise InvalidInput("shared memory is not enabled for this client" + (
            "" if self.enabled is False else " (only for clients on this machine; --enable_shared_memory true "
                                             "enables it for all)"))

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        path = object_path(key)
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError as error:
            raise InvalidInput(f"shared memory key {quoted(key)} cannot be opened: {error.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"shared memory key {quoted(key)} is not a shared memory object")
        if offset + byte_size > info.st_size:
            raise InvalidInput(f"region {quoted(name)}: {byte_size} bytes at offset {offset} run past the end of "
                               f"{quoted(key)} ({info.st_size} bytes)")
        with self.lock:
            if name in self.by_name:
                raise InvalidInput(f"shared memory region {quoted(name)} is already registered")
            self.by_name[name] = RegionStatus(name, key, offset, byte_size)

    def status(self, name: Optional[str] = None) -> list[RegionStatus]:
        with self.lock:
            if name is None:
                return list(self.by_name.values())
            return [self.named(name)]

    def unregister(self, name: Optional[str] = None) -> None:
        """One region, or all (``name`` None); one not registered is no error, as in Triton."""
        with self.lock:
            if name is None:
                self.by_name.clear()
            else:
                self.by_name.pop(name, None)

    def named(self, name: str) -> RegionStatus:
        region = self.by_name.get(name)
        if region is None:
            raise InvalidInput(f"no shared memory region {quoted(name)} is registered")
        return region

    def place(self, request: InferenceRequest, peer: str) -> Optional[tuple[int, int, int]]:
        """Find the regions the request's tensors name: InvalidInput for one not registered or a slice past its end.
        How many inputs are in regions, their bytes, and how many outputs, for the metrics; None when it names
        no region."""
        shared = {name: value for name, value in request.inputs.items() if isinstance(value, SharedInput)}
        if not (shared or request.output_places):
            return None
        self.allowed(peer)
        with self.lock:
            for name, value in shared.items():
                request.inputs[name] = SharedInput(  # type: ignore[assignment]  # read where the model runs
                    value.name, value.datatype, value.shape, self.found(value.place, f"input {quoted(name)}"))
            request.output_places = {name: self.found(place, f"output {quoted(name)}")
                                     for name, place in request.output_places.items()}
        return len(shared), sum(value.place.byte_size for value in shared.values()), len(request.output_places)

    def found(self, place: RegionSlice, what: str) -> RegionSlice:
        region = self.named(place.region)
        if place.offset + place.byte_size > region.byte_size:
            raise InvalidInput(f"{what}: {place.byte_size} bytes at offset {place.offset} run past the end of "
                               f"region {quoted(region.name)} ({region.byte_size} bytes)")
        return place.found(region.key, region.offset)

"""Messages between the server and a worker process, over a private Unix socket pair.

A message is pickled with protocol 5, its large buffers (NumPy array data)
kept out of band, so tensors cross as raw bytes, never re-encoded. A frame is

    n_buffers (u32) | pickle length (u32) | buffer lengths (u64 each) | pickle | buffers

A buffer under ``IN_BAND_BELOW`` bytes goes inside the pickle instead, so that
a message of many small tensors (an answer with one output per input) is a few
parts however many it holds, not a part and a read for each. A message may
still hold any number of large buffers: they are written at most ``SC_IOV_MAX``
at a time, the most one ``sendmsg`` takes. A buffer of ``SPILL_ABOVE``
bytes or more goes through shared memory (``spill``) where the channel has a
``Spill``: the frame holds the object's name, its length flagged ``SPILLED``.

Both ends are modelhost's own code: what a client sent arrives here as arrays
and strings already decoded by the server, so nothing a client wrote is ever
unpickled. The socket pair is created by the server and inherited by the worker
alone; nothing on the network can reach it.
"""

import asyncio
import os
import pickle
import socket
import struct
import threading
from typing import Optional

from .spill import Spill, take

PREFIX = struct.Struct("<II")
LENGTH = struct.Struct("<Q")
# Measured with these channels over a socket pair, 2,000 arrays a message: in band is the faster up to about 4 KiB
# towards a worker (whose blocking end reads each out-of-band buffer with a system call of its own), and up to about
# 256 bytes towards the server (whose reader copies a pickle more times than a buffer). At 1 KiB neither direction
# loses more than a microsecond or two an array, and a tensor of up to 255 float32s never takes a part of its own.
IN_BAND_BELOW = 1024
IOV_MAX = os.sysconf("SC_IOV_MAX")
SPILLED = 1 << 63  # a buffer length with this bit set: the part is the name of a spilled buffer's object
# Measured with bench/worker_channel.py, a round trip of one array: through the socket faster up to 4 MiB, about
# even at 8 and 16 MiB (spilled 1.1-1.2x faster), spilled 3.5x faster at 32 MiB and 3x at 64 MiB, where asyncio's
# reads of the socket fall off a cliff.
SPILL_ABOVE = 8 << 20


def encode(message: object, spill: Optional[Spill] = None) -> list:
    buffers: list[pickle.PickleBuffer] = []

    def in_band(buffer: pickle.PickleBuffer) -> bool:
        """True keeps a small buffer in the pickle; False leaves a large one out, a part of the frame."""
        if buffer.raw().nbytes < IN_BAND_BELOW:
            return True
        buffers.append(buffer)
        return False

    body = pickle.dumps(message, protocol=5, buffer_callback=in_band)
    parts: list[bytes | memoryview] = []
    sizes: list[int] = []
    for buffer in buffers:
        raw = buffer.raw()
        if spill is not None and raw.nbytes >= SPILL_ABOVE:
            name = spill.put(raw)
            parts.append(name)
            sizes.append(SPILLED | len(name))
        else:
            parts.append(raw)
            sizes.append(raw.nbytes)
    header = PREFIX.pack(len(parts), len(body)) + struct.pack(f"<{len(parts)}Q", *sizes)
    return [header, body, *parts]


def unspilled(size: int, part) -> object:
    """A buffer as its frame carried it: itself, or the mapping of the object it names."""
    return take(bytes(part)) if size & SPILLED else part


def lengths(data: bytes | bytearray) -> tuple[int, ...]:
    """The buffer lengths a frame's header lists."""
    return struct.unpack(f"<{len(data) // LENGTH.size}Q", data)


class AsyncChannel:
    """An end on an event loop: the server's, and the worker's of a model with ``async def`` hooks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spill: Optional[Spill] = None):
        self.reader = reader
        self.writer = writer
        self.spill = spill

    @classmethod
    async def open(cls, sock: socket.socket, spill: Optional[Spill] = None) -> "AsyncChannel":
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer, spill)

    async def send(self, message: object) -> None:
        await self.write(encode(message, self.spill))

    async def write(self, frames: list) -> None:
        """Send a message already encoded."""
        # At once, whole: messages sent from several tasks never interleave. asyncio joins the parts (3.11) or
        # gathers them with sendmsg at most SC_IOV_MAX at a time (3.12 on).
        self.writer.writelines(frames)
        await self.writer.drain()

    def post(self, message: object) -> None:
        """Send a small message without waiting for the channel to drain: from a callback, in order."""
        self.writer.writelines(encode(message))

    async def receive(self) -> object:
        """The next message; raises EOFError when the other end has gone."""
        try:
            count, length = PREFIX.unpack(await self.reader.readexactly(PREFIX.size))
            sizes = lengths(await self.reader.readexactly(count * LENGTH.size))
            body = await self.reader.readexactly(length)
            buffers = [unspilled(size, await self.reader.readexactly(size & ~SPILLED)) for size in sizes]
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise EOFError("the other end closed the channel") from exc
        return pickle.loads(body, buffers=buffers)

    def close(self) -> None:
        self.writer.close()


class BlockingChannel:
    """The worker's end for a model whose hooks are all synchronous: plain blocking calls on its one thread."""

    def __init__(self, sock: socket.socket, spill: Optional[Spill] = None):
        self.sock = sock
        self.spill = spill
        self.writing = threading.Lock()  # a generating model's threads write their parts as they come

    def send(self, message: object) -> None:
        self.write(encode(message, self.spill))

    def write(self, frames: list) -> None:
        """Send a message already encoded, whole, its parts gathered at most SC_IOV_MAX at a time."""
        with self.writing:
            self._write([memoryview(part) for part in frames])

    def _write(self, parts: list) -> None:
        first = 0
        while first < len(parts):  # sendmsg gathers the parts without joining them, but may send only some
            sent = self.sock.sendmsg(parts[first:first + IOV_MAX])
            while first < len(parts) and sent >= parts[first].nbytes:
                sent -= parts[first].nbytes
                first += 1
            if sent:
                parts[first] = parts[first][sent:]

    def receive(self) -> object:
        """The next message; raises EOFError when the server has gone."""
        count, length = PREFIX.unpack(self._read(PREFIX.size))
        sizes = lengths(self._read(count * LENGTH.size))
        body = self._read(length)
        # bytearrays (or private mappings), so the arrays a plugin receives are writable
        return pickle.loads(body, buffers=[unspilled(size, self._read(size & ~SPILLED)) for size in sizes])

    def _read(self, size: int) -> bytearray:
        data = bytearray(size)
        view = memoryview(data)
        while view:
            received = self.sock.recv_into(view)
            if not received:
                raise EOFError("the server closed the channel")
            view = view[received:]
        return data

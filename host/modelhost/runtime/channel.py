"""Messages between the server and a worker process, over a private Unix socket pair.

A message is pickled with protocol 5, its large buffers (NumPy array data)
kept out of band, so tensors cross as raw bytes, never re-encoded. A frame is

    n_buffers (u32) | pickle length (u32) | buffer lengths (u64 each) | pickle | buffers

Both ends are modelhost's own code: what a client sent arrives here as arrays
and strings already decoded by the server, so nothing a client wrote is ever
unpickled. The socket pair is created by the server and inherited by the worker
alone; nothing on the network can reach it.
"""

import asyncio
import pickle
import socket
import struct

PREFIX = struct.Struct("<II")
LENGTH = struct.Struct("<Q")


def encode(message: object) -> list:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    header = PREFIX.pack(len(raws), len(body)) + b"".join(LENGTH.pack(raw.nbytes) for raw in raws)
    return [header, body, *raws]


class AsyncChannel:
    """An end on an event loop: the server's, and the worker's of a model with ``async def`` hooks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> "AsyncChannel":
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    async def send(self, message: object) -> None:
        await self.write(encode(message))

    async def write(self, frames: list) -> None:
        """Send a message already encoded."""
        self.writer.writelines(frames)  # at once, whole: messages sent from several tasks never interleave
        await self.writer.drain()

    async def receive(self) -> object:
        """The next message; raises EOFError when the other end has gone."""
        try:
            count, length = PREFIX.unpack(await self.reader.readexactly(PREFIX.size))
            sizes = [LENGTH.unpack(await self.reader.readexactly(LENGTH.size))[0] for _ in range(count)]
            body = await self.reader.readexactly(length)
            buffers = [await self.reader.readexactly(size) for size in sizes]
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise EOFError("the other end closed the channel") from exc
        return pickle.loads(body, buffers=buffers)

    def close(self) -> None:
        self.writer.close()


class BlockingChannel:
    """The worker's end for a model whose hooks are all synchronous: plain blocking calls on its one thread."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, message: object) -> None:
        self.write(encode(message))

    def write(self, frames: list) -> None:
        """Send a message already encoded."""
        parts = [memoryview(part) for part in frames]
        while parts:  # sendmsg gathers the parts without joining them, but may send only some
            sent = self.sock.sendmsg(parts)
            while parts and sent >= parts[0].nbytes:
                sent -= parts.pop(0).nbytes
            if sent:
                parts[0] = parts[0][sent:]

    def receive(self) -> object:
        """The next message; raises EOFError when the server has gone."""
        count, length = PREFIX.unpack(self._read(PREFIX.size))
        sizes = [LENGTH.unpack(self._read(LENGTH.size))[0] for _ in range(count)]
        body = self._read(length)
        # bytearrays, so the arrays a plugin receives are writable
        return pickle.loads(body, buffers=[self._read(size) for size in sizes])

    def _read(self, size: int) -> bytearray:
        data = bytearray(size)
        view = memoryview(data)
        while view:
            received = self.sock.recv_into(view)
            if not received:
                raise EOFError("the server closed the channel")
            view = view[received:]
        return data

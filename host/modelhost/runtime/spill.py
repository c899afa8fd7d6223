"""Large tensors between the server and a worker through shared memory of their own, not the channel's socket.

A buffer of ``channel.SPILL_ABOVE`` bytes or more (an array's data, kept out
of band by ``channel.encode``) is written into a new shared-memory object under
``/dev/shm``, and only the object's name crosses the socket. The receiver maps
the object (privately: writable, copy-on-write), removes its name at once, and
the array it unpickles is a view of the mapping. One copy into the object; the
socket's way cost the server several more (asyncio joins the parts and gathers
what it reads) and a system call per 64 KiB: measured by
``bench/worker_channel.py``.

Objects are named ``modelhost-SERVER_PID-WORKER_PID-...``: once a worker has
exited, ``sweep`` removes what either end wrote that the other never took.
"""

import glob
import mmap
import os
import secrets

ROOT = "/dev/shm"


class Spill:
    """Where one end of one server-worker channel writes its large buffers."""

    def __init__(self, server_pid: int, worker_pid: int):
        self.prefix = f"modelhost-{server_pid}-{worker_pid}-"

    def put(self, raw: memoryview) -> bytes:
        """The name of a new object holding ``raw``."""
        name = f"{self.prefix}{secrets.token_hex(8)}"
        fd = os.open(os.path.join(ROOT, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            view = raw.cast("B")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return name.encode()

    def sweep(self) -> None:
        """Remove this channel's objects that were written and never taken."""
        for path in glob.glob(os.path.join(ROOT, glob.escape(self.prefix) + "*")):
            try:
                os.unlink(path)
            except FileNotFoundError:  # taken meanwhile
                pass


def take(name: bytes) -> memoryview:
    """The buffer the other end put in object ``name``, mapped; the name is gone once this returns."""
    path = os.path.join(ROOT, name.decode())
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.unlink(path)
        return memoryview(mmap.mmap(fd, os.fstat(fd).st_size, flags=mmap.MAP_PRIVATE))
    finally:
        os.close(fd)

"""Triton's shared-memory extension over HTTP: register, status and unregister regions.

System shared memory is served (``runtime.shared_memory.Regions``); CUDA
shared memory needs a GPU this server does not drive, and each of its routes
says so with a 400.
"""

from typing import Optional

from ..errors import InvalidInput
from ..protocol import jsonio
from ..protocol.shared_memory import CUDA_NOT_SUPPORTED, register_request
from .handling import BaseHandler

SYSTEM, CUDA, REGION = "/v2/systemsharedmemory", "/v2/cudasharedmemory", "/region/(?P<name>[^/]+)"


class SystemSharedMemoryHandler(BaseHandler):
    """For clients the server lets use shared memory (--enable_shared_memory)."""

    def prepare(self):
        super().prepare()
        self.inference.regions.allowed(self.request.remote_ip)


class StatusHandler(SystemSharedMemoryHandler):
    def get(self, name: Optional[str] = None):
        self.write_json([vars(region) for region in self.inference.regions.status(name)])


class RegisterHandler(SystemSharedMemoryHandler):
    def post(self, name: str):
        self.inference.regions.register(name, *register_request(jsonio.load_object(self.body)))
        self.write_json({})


class UnregisterHandler(SystemSharedMemoryHandler):
    def post(self, name: Optional[str] = None):
        self.inference.regions.unregister(name)
        self.write_json({})


class CudaSharedMemoryHandler(BaseHandler):
    def prepare(self):
        super().prepare()
        raise InvalidInput(CUDA_NOT_SUPPORTED)


ROUTES = [
    (f"{SYSTEM}/status", StatusHandler),
    (f"{SYSTEM}{REGION}/status", StatusHandler),
    (f"{SYSTEM}{REGION}/register", RegisterHandler),
    (f"{SYSTEM}/unregister", UnregisterHandler),
    (f"{SYSTEM}{REGION}/unregister", UnregisterHandler),
    *[(f"{CUDA}{path}", CudaSharedMemoryHandler)
      for path in ("/status", f"{REGION}/status", f"{REGION}/register", "/unregister", f"{REGION}/unregister")],
]

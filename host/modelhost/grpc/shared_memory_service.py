"""Triton's shared-memory extension over gRPC: ``SystemSharedMemoryStatus``, ``...Register`` and
``...Unregister`` on the server's regions, and the CUDA calls, UNIMPLEMENTED (no GPU is driven here)."""

from typing import Any, Awaitable, Callable

import grpc

from ..inference import Inference
from ..protocol.shared_memory import CUDA_NOT_SUPPORTED


class SharedMemoryService:
    def __init__(self, inference: Inference, messages: Any):
        self.regions = inference.regions
        self.messages = messages

    def rpcs(self) -> dict[str, tuple[Callable[..., Awaitable[Any]], str]]:
        """The calls by method name, with their request message's name, as ``InferenceService.handlers`` takes them."""
        cuda = {f"CudaSharedMemory{verb}": (self.cuda, f"CudaSharedMemory{verb}Request")
                for verb in ("Status", "Register", "Unregister")}
        return {"SystemSharedMemoryStatus": (self.status, "SystemSharedMemoryStatusRequest"),
                "SystemSharedMemoryRegister": (self.register, "SystemSharedMemoryRegisterRequest"),
                "SystemSharedMemoryUnregister": (self.unregister, "SystemSharedMemoryUnregisterRequest"), **cuda}

    async def status(self, request, context: grpc.aio.ServicerContext):
        self.regions.allowed(context.peer())
        response = self.messages.SystemSharedMemoryStatusResponse()
        for region in self.regions.status(request.name or None):
            response.regions[region.name].CopyFrom(response.RegionStatus(**vars(region)))
        return response

    async def register(self, request, context: grpc.aio.ServicerContext):
        self.regions.allowed(context.peer())
        self.regions.register(request.name, request.key, request.offset, request.byte_size)
        return self.messages.SystemSharedMemoryRegisterResponse()

    async def unregister(self, request, context: grpc.aio.ServicerContext):
        self.regions.allowed(context.peer())
        self.regions.unregister(request.name or None)
        return self.messages.SystemSharedMemoryUnregisterResponse()

    async def cuda(self, request, context: grpc.aio.ServicerContext):
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details(CUDA_NOT_SUPPORTED)
        return None

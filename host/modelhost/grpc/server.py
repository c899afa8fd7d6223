"""The gRPC server of one serving process: on its event loop, beside the HTTP server, on a port of its own.

Made in each serving process after any fork (gRPC's core does not survive
one); with ``--workers N`` each process binds the port with SO_REUSEPORT, as
gRPC does by default, and the kernel shares the connections out. It serves
the inference service and the standard health service (``grpc.health.v1``,
for Kubernetes' gRPC probes): SERVING while the server is ready, NOT_SERVING
while it is not and once it drains.
"""

import asyncio
import logging
from typing import Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..protocol import grpc_v2
from .service import GRPCServing, InferenceService

log = logging.getLogger("modelhost")

HEALTH_INTERVAL_SECONDS = 1.0  # how often the health service's status follows the server's readiness


class ReadinessHealth(health.aio.HealthServicer):
    """grpc_health's servicer, whose ``Check`` of the server (and of the inference service) is the server's
    readiness at that moment; ``Watch`` streams follow it once a second."""

    def __init__(self, ready: Callable[[], bool]):
        super().__init__()
        self.ready = ready
        self.draining = False

    async def Check(self, request, context):  # noqa: N802, the gRPC method's name
        if request.service not in ("", grpc_v2.SERVICE) or self.draining:
            return await super().Check(request, context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING if self.ready()
                                              else health_pb2.HealthCheckResponse.NOT_SERVING)


class GRPCServer:
    def __init__(self, serving: GRPCServing, host: str, port: int, max_receive: int, max_send: Optional[int],
                 shared_port: bool, credentials: Optional[grpc.ServerCredentials] = None):
        self.serving = serving
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", max_receive),
            ("grpc.max_send_message_length", -1 if max_send is None else max_send),
            # Only server processes of one server share a port: another server's binding it is an error.
            ("grpc.so_reuseport", int(shared_port)),
        ])
        self.server.add_generic_rpc_handlers((InferenceService(serving).handlers(),))
        self.health = ReadinessHealth(serving.inference.repository.all_ready)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = self.server.add_secure_port(address, credentials) if credentials else \
            self.server.add_insecure_port(address)
        self.following: Optional[asyncio.Task] = None

    async def start(self) -> None:
        await self.server.start()
        self.following = asyncio.create_task(self.follow_readiness())

    async def follow_readiness(self) -> None:
        repository = self.serving.inference.repository
        while True:
            status = health_pb2.HealthCheckResponse.SERVING if repository.all_ready() else \
                health_pb2.HealthCheckResponse.NOT_SERVING
            for service in ("", grpc_v2.SERVICE):
                await self.health.set(service, status)
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    async def drain(self) -> None:
        """Say NOT_SERVING; calls still come in until the server stops, and are refused by admission (503)."""
        if self.following:
            self.following.cancel()
        self.health.draining = True
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)

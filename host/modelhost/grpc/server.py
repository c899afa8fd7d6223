"""The gRPC server of one serving process: on its event loop, beside the HTTP server, on a port of its own.

Made in each serving process after any fork (gRPC's core does not survive
one); with ``--workers N`` each process binds the port with SO_REUSEPORT, as
gRPC does by default, and the kernel shares the connections out. It serves
the inference service and the standard health service (``grpc.health.v1``,
for Kubernetes' gRPC probes): SERVING while the server is ready, NOT_SERVING
while it is not and once it drains. What a client may hold of it, and for how
long, is bounded (``bounds``).
"""

import asyncio
import inspect
import logging
from typing import Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..protocol import grpc_v2
from . import stream_infer
from .bounds import GRPCBounds
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


class MessageDeadline(grpc.aio.ServerInterceptor):
    """Every call with one request message must have it within ``seconds`` of its headers, as ``--body_timeout``
    bounds an HTTP body, or ends with DEADLINE_EXCEEDED, which frees what the message held.

    gRPC reads a unary call's message before its handler starts, with no limit of time; so such a method is
    served here as a request-streaming one, whose handler reads the one message itself, under a timer.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.bounded: dict[str, grpc.RpcMethodHandler] = {}  # by method: each is wrapped once

    async def intercept_service(self, continuation, details):
        if details.method not in self.bounded:
            handler = await continuation(details)
            if handler is None:  # an unknown method: not remembered, or a client could grow the dict for ever
                return None
            self.bounded[details.method] = self.bound(handler)
        return self.bounded[details.method]

    def bound(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behavior = handler.unary_unary or handler.unary_stream
        if handler.request_streaming or not inspect.iscoroutinefunction(behavior):
            return handler  # a stream's messages are its handler's to wait for; a synchronous one (none here) is gRPC's
        first_message = self.first_message
        if not handler.response_streaming:
            async def answer(requests, context):
                return await behavior(await first_message(context), context)

            return grpc.stream_unary_rpc_method_handler(answer, handler.request_deserializer,
                                                        handler.response_serializer)

        async def stream(requests, context):  # the health service's Watch, which writes through its context
            await behavior(await first_message(context), context)

        return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)

    async def first_message(self, context: grpc.aio.ServicerContext):
        task = asyncio.current_task()
        assert task is not None  # the call's own, which gRPC cancels when its client goes
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.seconds, expire)
        try:
            request = await context.read()
        except asyncio.CancelledError:
            if not expired:  # the client went (gRPC cancels the call's task): nothing to answer
                raise
            # The status a client's own deadline would give; sending it resets the stream, which frees the message.
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the request message did not arrive within body_timeout ({self.seconds:g}s)")
        finally:
            timer.cancel()
        if request is grpc.aio.EOF:  # the client's mistake: not INTERNAL, which grpc-go answers
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended without its request message")
        return request


class GRPCServer:
    def __init__(self, serving: GRPCServing, host: str, port: int, max_receive: int, max_send: Optional[int],
                 shared_port: bool, credentials: Optional[grpc.ServerCredentials] = None,
                 bounds: Optional[GRPCBounds] = None):
        self.serving = serving
        bounds = bounds or GRPCBounds()
        self.server = grpc.aio.server(interceptors=[MessageDeadline(bounds.message_timeout)], options=[
            ("grpc.max_receive_message_length", max_receive),
            ("grpc.max_send_message_length", -1 if max_send is None else max_send),
            # Only server processes of one server share a port: another server's binding it is an error.
            ("grpc.so_reuseport", int(shared_port)),
            *bounds.server_options(),
        ])
        self.server.add_generic_rpc_handlers((InferenceService(serving).handlers(), stream_infer.handler(serving)))
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

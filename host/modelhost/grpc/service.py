"""The GRPCInferenceService: each RPC over the same repository and inference call as the HTTP routes.

A ``ModelInfer`` begins an ``InferenceCall`` as an HTTP exchange does, so it
is admitted, batched, timed out, drained, logged and counted the same way
(``protocol="grpc"``). An error is the same message as over HTTP, with the
gRPC status that matches its HTTP one (``code_for``). A call whose client
goes (a cancel, or its deadline) is withdrawn, as a disconnect is over HTTP.
"""

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Optional

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from .. import logs
from ..auth import check_bearer
from ..errors import ClientGone, InvalidInput, ModelBusy, ModelhostError, ModelNotFound, shortened
from ..inference import Inference, InferenceCall
from ..model import served_versions
from ..replies import Reply
from ..protocol import grpc_v2, v2
from ..protocol.limits import DEFAULT_LIMITS, RequestLimits
from ..request import Headers, InferenceRequest
from .shared_memory_service import SharedMemoryService

log = logging.getLogger("modelhost")

def code_for(error: ModelhostError) -> grpc.StatusCode:
    if isinstance(error, ModelBusy):  # 503 over HTTP, with Retry-After; gRPC has a code of its own for it
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc_v2.CODES.get(error.status, grpc.StatusCode.INTERNAL)


@dataclass
class GRPCServing:
    """What the service needs of its serving process."""

    inference: Inference
    request_ids: Iterator[str]
    auth_token: Optional[str]
    limits: RequestLimits = DEFAULT_LIMITS  # what one inference request may hold beyond its bytes


class InferenceService:
    def __init__(self, serving: GRPCServing):
        self.serving = serving
        self.repository = serving.inference.repository
        self.messages = grpc_v2.messages()

    def handlers(self) -> grpc.GenericRpcHandler:
        """Every RPC, under the method names of ``inference.proto``'s service."""
        messages = self.messages
        rpcs: dict[str, tuple[Callable[..., Awaitable[Any]], str]] = {
            "ServerLive": (self.server_live, "ServerLiveRequest"),
            "ServerReady": (self.server_ready, "ServerReadyRequest"),
            "ModelReady": (self.model_ready, "ModelReadyRequest"),
            "ServerMetadata": (self.server_metadata, "ServerMetadataRequest"),
            "ModelMetadata": (self.model_metadata, "ModelMetadataRequest"),
            "ModelInfer": (self.model_infer, "ModelInferRequest"),
            "ModelConfig": (self.model_config, "ModelConfigRequest"),
            "ModelStatistics": (self.model_statistics, "ModelStatisticsRequest"),
            "RepositoryIndex": (self.repository_index, "RepositoryIndexRequest"),
            "RepositoryModelLoad": (self.repository_model_load, "RepositoryModelLoadRequest"),
            "RepositoryModelUnload": (self.repository_model_unload, "RepositoryModelUnloadRequest"),
            **SharedMemoryService(self.serving.inference, messages).rpcs(),
        }
        open_to_all = {"ServerLive", "ServerReady", "ModelReady"}  # probes, as over HTTP
        return grpc.method_handlers_generic_handler(grpc_v2.SERVICE, {
            # The request arrives as bytes and is parsed in the RPC: grpc's own parsing answers bytes that are no
            # message with UNKNOWN, and logs a traceback for each.
            name: grpc.unary_unary_rpc_method_handler(
                self.guarded(name, method, getattr(messages, request), name in open_to_all),
                response_serializer=lambda response: response.SerializeToString(),
            )
            for name, (method, request) in rpcs.items()
        })

    def guarded(self, name: str, method: Callable[..., Awaitable[Any]], message_class: Any, open_to_all: bool):
        """The RPC behind the bearer token (when the server has one), its request parsed, its errors as gRPC
        statuses."""

        @functools.wraps(method)
        async def rpc(body: bytes, context: grpc.aio.ServicerContext):
            try:
                if self.serving.auth_token and not open_to_all:
                    check_token(context, self.serving.auth_token)
                try:
                    request = message_class.FromString(body)
                except DecodeError:
                    request_id = str(dict(context.invocation_metadata() or ()).get("x-request-id", ""))
                    raise unparsable(message_class, logs.Origin(name, "", context.peer(), request_id)) from None
                return await method(request, context)
            except ModelhostError as error:
                return refuse(context, code_for(error), error.message)

        return rpc

    async def server_live(self, request, context):
        return self.messages.ServerLiveResponse(live=True)

    async def server_ready(self, request, context):
        return self.messages.ServerReadyResponse(ready=self.repository.all_ready())

    async def model_ready(self, request, context):
        # A model not served here is not ready, as Triton answers: tritonclient's is_model_ready returns False, where
        # NOT_FOUND would raise.
        try:
            ready = self.repository.is_ready(request.name, request.version or None)
        except ModelNotFound:
            ready = False
        return self.messages.ModelReadyResponse(ready=ready)

    async def server_metadata(self, request, context):
        return self.messages.ServerMetadataResponse(**v2.server_metadata(self.serving.inference.regions.extensions()))

    async def model_metadata(self, request, context):
        runner = self.repository.get_ready(request.name, request.version or None)
        described = v2.model_metadata(request.name, served_versions(runner.spec, runner.metadata), runner.metadata)
        return self.messages.ModelMetadataResponse(
            name=described["name"], versions=described["versions"], platform=described["platform"],
            inputs=[tensor_metadata(tensor) for tensor in described["inputs"]],
            outputs=[tensor_metadata(tensor) for tensor in described["outputs"]])

    async def model_config(self, request, context):
        configuration = self.serving.inference.configuration(request.name, request.version or None)
        # The proto's ModelInput has no 'optional' (Triton's later field): REST's configuration says it alone.
        return json_format.ParseDict({"config": configuration}, self.messages.ModelConfigResponse(),
                                     ignore_unknown_fields=True)

    async def model_statistics(self, request, context):
        statistics = self.serving.inference.statistics(request.name or None, request.version or None)
        return json_format.ParseDict(statistics, self.messages.ModelStatisticsResponse(), ignore_unknown_fields=True)

    async def repository_index(self, request, context):
        entries = await self.repository.index(ready_only=request.ready)
        return self.messages.RepositoryIndexResponse(models=[
            {"name": entry["name"], "version": entry.get("version", ""), "state": entry["state"],
             "reason": entry["reason"]} for entry in entries])

    async def repository_model_load(self, request, context):
        v2.check_repository_parameters(grpc_v2.parameters_of(request.parameters), v2.LOAD_PARAMETERS)
        await self.repository.load(request.model_name)
        return self.messages.RepositoryModelLoadResponse()

    async def repository_model_unload(self, request, context):
        v2.check_repository_parameters(grpc_v2.parameters_of(request.parameters), v2.UNLOAD_PARAMETERS)
        await self.repository.unload(request.model_name)
        return self.messages.RepositoryModelUnloadResponse()

    async def model_infer(self, request, context: grpc.aio.ServicerContext):
        metadata = context.invocation_metadata() or ()
        headers = Headers([(key, value) for key, value in metadata if isinstance(value, str)])
        request_id = headers.get("x-request-id") or next(self.serving.request_ids)
        context.set_trailing_metadata((("x-request-id", request_id),))
        origin = logs.Origin("ModelInfer", shortened(request.model_name), context.peer(), request_id)
        answered = asyncio.get_running_loop().create_future()
        call = self.serving.inference.begin("grpc", origin, lambda result, error: answered.set_result((result, error)),
                                            headers)
        try:
            call.admit(request.model_name)
            call.run(request.model_version or None, lambda: decoded(request, headers, self.serving.limits),
                     request.ByteSize())
        except Exception as error:
            call.fail(error)
        try:
            result, failure = await answered
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed: grpc answers it
            call.withdraw()
            call.finish(ClientGone.status)
            raise
        if failure is None:
            try:
                response = encoded(result, call)
            except ModelhostError as encoding_error:
                call.log_failure(encoding_error)
                failure = encoding_error
            else:
                if isinstance(result, Reply) and result.headers:  # a plugin's HTTP headers, as gRPC metadata
                    await context.send_initial_metadata(tuple((name.lower(), value)
                                                              for name, value in result.headers.items()))
                call.finish(200)
                return response
        if isinstance(failure, ModelhostError):
            call.finish(failure.status)
            return refuse(context, code_for(failure), failure.message)
        call.finish(500)
        return refuse(context, grpc.StatusCode.INTERNAL, "Internal Server Error")

def refuse(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """Answer with an error status. Not ``context.abort``: the exception it raises would hold the RPC's frames,
    and with them the request, in a cycle with grpc's state that only the garbage collector breaks, pinning a
    large refused request's memory until it runs."""
    context.set_code(code)
    context.set_details(message)
    return None


def unparsable(message_class: Any, origin: logs.Origin) -> InvalidInput:
    refusal = InvalidInput(f"cannot parse the request as {message_class.DESCRIPTOR.full_name}")
    logs.refused(refusal.status, refusal.message, origin)  # one line, where grpc's own parsing logged a traceback
    return refusal


def decoded(request, headers: Headers, limits: RequestLimits) -> InferenceRequest:
    decoded_request = grpc_v2.decode_infer_request(request, limits)
    decoded_request.headers = headers
    return decoded_request


def encoded(result: Any, call: InferenceCall):
    assert call.request is not None  # a call that has a result has run its request
    if not isinstance(result, Reply):
        return grpc_v2.encode_infer_response(result, call.request, call.name, call.model_version())
    return grpc_v2.encode_infer_response(result.payload, call.request, call.name, call.model_version(),
                                         result.parameters, result.output_parameters)


def tensor_metadata(tensor: dict) -> dict:
    """A declared tensor as TensorMetadata holds it: what a plugin declares beyond these stays in JSON."""
    return {"name": tensor.get("name", ""), "datatype": tensor.get("datatype", ""), "shape": tensor.get("shape", [])}


def check_token(context: grpc.aio.ServicerContext, auth_token: str) -> None:
    check_bearer(str(dict(context.invocation_metadata() or ()).get("authorization", "")), auth_token)

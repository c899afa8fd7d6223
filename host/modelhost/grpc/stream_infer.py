"""``ModelStreamInfer``: many requests on one stream, each answered with one response or, from a model that
generates (a decoupled model, in Triton's words), one response per piece.

Each request is an ``InferenceCall`` of its own, as a ``ModelInfer`` is, so it
is admitted, timed out, drained, logged and counted the same way; requests on
one stream run side by side, their responses written as they come, one write
at a time (each awaited: a client that reads slowly holds back the
generations). Every response says whether it is its request's last
(``triton_final_response``, as Triton's do); a request that sets
``triton_enable_empty_final_response`` gets an empty last response after a
generation's pieces, which is how ``tritonclient`` learns it has ended. An
error answers its request with ``error_message``, and the stream goes on.
"""

import asyncio
from typing import Any, AsyncIterator, Optional

import grpc
from google.protobuf.message import DecodeError

from .. import logs
from ..errors import ClientGone, ModelhostError, shortened
from ..inference import InferenceCall
from ..protocol import grpc_v2
from ..replies import Reply
from ..request import Headers
from ..runtime.streams import PieceStream
from .service import GRPCServing, check_token, code_for, decoded, unparsable


def handler(serving: GRPCServing) -> grpc.GenericRpcHandler:
    """``ModelStreamInfer``, beside the service's other RPCs (``service.InferenceService.handlers``)."""
    return grpc.method_handlers_generic_handler(grpc_v2.SERVICE, {"ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
        StreamInfer(serving).serve, response_serializer=lambda response: response.SerializeToString())})


class StreamInfer:
    def __init__(self, serving: GRPCServing):
        self.serving = serving
        self.messages = grpc_v2.messages()

    async def serve(self, bodies: AsyncIterator[bytes], context: Any) -> None:
        metadata = context.invocation_metadata() or ()
        headers = Headers([(key, value) for key, value in metadata if isinstance(value, str)])
        if self.serving.auth_token:
            try:
                check_token(context, self.serving.auth_token)
            except ModelhostError as error:
                context.set_code(code_for(error))
                context.set_details(error.message)
                return
        writing = asyncio.Lock()

        async def write(response) -> None:
            async with writing:
                await context.write(response)

        answering: set[asyncio.Task] = set()
        try:
            async for body in bodies:
                task = asyncio.create_task(self.answer(body, headers, context.peer(), write))
                answering.add(task)
                task.add_done_callback(answering.discard)
            await asyncio.gather(*answering)
        finally:  # the client cancelled, or its deadline passed: each request in flight is withdrawn
            for task in answering:
                task.cancel()

    async def answer(self, body: bytes, headers: Headers, peer: str, write) -> None:
        request_id = headers.get("x-request-id") or next(self.serving.request_ids)
        origin = logs.Origin("ModelStreamInfer", "", peer, request_id)
        try:
            request = self.messages.ModelInferRequest.FromString(body)
        except DecodeError:
            await write(self.failure("", unparsable(self.messages.ModelInferRequest, origin)))
            return
        origin = logs.Origin("ModelStreamInfer", shortened(request.model_name), peer, request_id)
        answered = asyncio.get_running_loop().create_future()
        call = self.serving.inference.begin("grpc", origin, lambda result, error: answered.set_result((result, error)),
                                            headers)
        try:
            call.admit(request.model_name)
            call.run(request.model_version or None, lambda: generating(request, headers, self.serving), request.ByteSize())
        except Exception as error:
            call.fail(error)
        status = 200
        try:
            result, failure = await answered
            if failure is not None:
                status = getattr(failure, "status", 500)
                await write(self.failure(request.id, failure))
            elif isinstance(result, PieceStream):
                status = await self.pieces(result, call, request, write)
            else:
                await write(self.response(result, call, final=True))
        except asyncio.CancelledError:
            call.withdraw()
            status = ClientGone.status
            raise
        except ModelhostError as error:  # a result that cannot be encoded
            call.log_failure(error)
            status = error.status
            await write(self.failure(request.id, error))
        finally:
            call.finish(status)

    async def pieces(self, stream: PieceStream, call: InferenceCall, request, write) -> int:
        try:
            while (part := await stream.next()) is not None:
                await write(self.response(part.outputs, call, final=False))
            if empty_final_asked(request):
                assert call.request is not None  # a call with parts has run its request
                await write(self.messages.ModelStreamInferResponse(infer_response=grpc_v2.encode_infer_response(
                    {}, call.request, call.name, call.model_version(), {grpc_v2.FINAL: True})))
            return 200
        except ModelhostError as error:
            if not isinstance(error, ClientGone):
                call.log_failure(error)
            await write(self.failure(request.id, error))
            return error.status
        finally:
            stream.close()

    def response(self, result: Any, call: InferenceCall, final: bool):
        assert call.request is not None  # a call with a result has run its request
        payload, parameters, output_parameters = result, {}, {}
        if isinstance(result, Reply):
            payload, parameters, output_parameters = result.payload, result.parameters, result.output_parameters
        return self.messages.ModelStreamInferResponse(infer_response=grpc_v2.encode_infer_response(
            payload, call.request, call.name, call.model_version(), {**parameters, grpc_v2.FINAL: final}, output_parameters))

    def failure(self, request_id: str, error: BaseException):
        message = error.message if isinstance(error, ModelhostError) else "Internal Server Error"
        return self.messages.ModelStreamInferResponse(error_message=message,
                                                      infer_response=self.messages.ModelInferResponse(id=request_id))


def generating(request, headers: Headers, serving: GRPCServing):
    """The request, asking the model to generate: a model that only predicts answers once
    (``inference.answering_verb``)."""
    decoded_request = decoded(request, headers, serving.limits)
    decoded_request.verb = "generate"
    return decoded_request


def empty_final_asked(request) -> bool:
    asked: Optional[Any] = request.parameters.get(grpc_v2.EMPTY_FINAL)
    return bool(asked is not None and asked.bool_param)

"""The predictor over the Open Inference Protocol's gRPC (KServe's ``grpc-v2``): one channel per client, made on
first use on the event loop of the process that calls it, tensors in raw contents both ways."""

from typing import Any, AsyncGenerator, Optional

import grpc
import numpy as np
from google.protobuf import json_format

from ..errors import InvalidInput, PredictorError
from ..protocol import grpc_v2
from .client import PredictorClient, PredictorSettings, Unreachable

# How grpc-core words a call that found no connection; anything else came from the predictor.
NOT_CONNECTED = ("failed to connect", "connection refused", "connections to all backends failing",
                 "dns resolution failed")


class GRPCPredictor(PredictorClient):
    def __init__(self, settings: PredictorSettings, model_name: str):
        super().__init__(settings, model_name)
        self.channel: Optional[grpc.aio.Channel] = None
        self.messages = grpc_v2.messages()

    def call(self, method: str, response_type: str) -> grpc.aio.UnaryUnaryMultiCallable:
        if self.channel is None:
            options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            self.channel = grpc.aio.secure_channel(self.settings.host, grpc.ssl_channel_credentials(), options) \
                if self.settings.use_ssl else grpc.aio.insecure_channel(self.settings.host, options)
        return self.channel.unary_unary(f"/{grpc_v2.SERVICE}/{method}",
                                        request_serializer=lambda message: message.SerializeToString(),
                                        response_deserializer=getattr(self.messages, response_type).FromString)

    async def ask(self, method: str, request, response_type: str, headers: Optional[dict[str, str]] = None):
        """The predictor's answer; Unreachable when it cannot be connected to, PredictorError when it failed."""
        try:
            return await self.call(method, response_type)(request, metadata=tuple((headers or {}).items()))
        except grpc.aio.AioRpcError as error:
            raise self.refused(error) from None

    @staticmethod
    def refused(error: grpc.aio.AioRpcError) -> Exception:
        """Unreachable when the call found no connection, else the predictor's PredictorError."""
        details = error.details() or ""
        if error.code() == grpc.StatusCode.UNAVAILABLE and any(words in details.lower() for words in NOT_CONNECTED):
            return Unreachable(details)
        return PredictorError(f"the predictor answered {error.code().name}: {details}",
                              grpc_v2.STATUSES.get(error.code(), 500))

    async def send(self, inputs: Any, model: str, headers: dict[str, str]) -> Any:
        request = grpc_v2.encode_infer_request(model, await self.named_inputs(inputs, model))
        answer = await self.ask("ModelInfer", request, "ModelInferResponse", headers)
        try:
            return grpc_v2.decode_infer_response(answer)
        except InvalidInput as error:
            raise PredictorError(f"the predictor answered outputs that do not add up: {error.message}") from None

    async def send_stream(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any], model: str,
                          headers: dict[str, str]) -> AsyncGenerator[dict[str, np.ndarray], None]:
        request = grpc_v2.encode_infer_request(model, inputs)
        grpc_v2.set_parameters(request.parameters, parameters, "the request's")
        request.parameters[grpc_v2.EMPTY_FINAL].bool_param = True  # so that the last response says it is the last
        self.call("ModelInfer", "ModelInferResponse")  # the channel, made on first use
        assert self.channel is not None
        call = self.channel.stream_stream(f"/{grpc_v2.SERVICE}/ModelStreamInfer",
                                          request_serializer=lambda message: message.SerializeToString(),
                                          response_deserializer=self.messages.ModelStreamInferResponse.FromString)
        responses = call(iter([request]), metadata=tuple(headers.items()))
        try:
            async for response in responses:
                if response.error_message:
                    raise PredictorError(f"the predictor answered: {response.error_message}")
                answer = response.infer_response
                if answer.outputs:
                    try:
                        yield grpc_v2.decode_infer_response(answer)
                    except InvalidInput as error:
                        raise PredictorError(f"the predictor answered outputs that do not add up: "
                                             f"{error.message}") from None
                final = answer.parameters.get(grpc_v2.FINAL)
                if final is not None and final.bool_param:
                    return
        except grpc.aio.AioRpcError as error:
            raise self.refused(error) from None
        finally:
            responses.cancel()

    async def is_ready(self, model: str) -> bool:
        answer = await self.ask("ModelReady", self.messages.ModelReadyRequest(name=model), "ModelReadyResponse")
        return answer.ready

    async def metadata(self, model: str) -> dict:
        try:
            answer = await self.ask("ModelMetadata", self.messages.ModelMetadataRequest(name=model),
                                    "ModelMetadataResponse")
        except Unreachable as error:
            raise PredictorError(f"the predictor's metadata: {error}") from None
        return json_format.MessageToDict(answer, preserving_proto_field_name=True)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

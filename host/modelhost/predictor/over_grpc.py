"""The predictor over the Open Inference Protocol's gRPC (KServe's ``grpc-v2``): one channel per client, made on
first use on the event loop of the process that calls it, tensors in raw contents both ways."""

from typing import Any, Optional

import grpc
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
            details = error.details() or ""
            if error.code() == grpc.StatusCode.UNAVAILABLE and any(
                    words in details.lower() for words in NOT_CONNECTED):
                raise Unreachable(details) from None
            raise PredictorError(f"the predictor answered {error.code().name}: {details}",
                                 grpc_v2.STATUSES.get(error.code(), 500)) from None

    async def send(self, inputs: Any, model: str, headers: dict[str, str]) -> Any:
        request = grpc_v2.encode_infer_request(model, await self.named_inputs(inputs, model))
        answer = await self.ask("ModelInfer", request, "ModelInferResponse", headers)
        try:
            return grpc_v2.decode_infer_response(answer)
        except InvalidInput as error:
            raise PredictorError(f"the predictor answered outputs that do not add up: {error.message}") from None

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

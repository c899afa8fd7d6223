"""The transformer role's hooks, registered under the plugin's own in the model's plugin manager."""

from typing import Any, AsyncIterator

from ..hookspecs import hookimpl
from ..request import InferenceRequest
from .client import PredictorClient


class PredictorHooks:
    def __init__(self, client: PredictorClient):
        self.client = client

    @hookimpl(trylast=True)  # a plugin's own predict answers first
    async def predict(self, inputs: Any) -> Any:
        return await self.client.infer(inputs)

    @hookimpl(trylast=True)  # a plugin's own generate answers first
    async def generate(self, inputs: Any, request: InferenceRequest) -> AsyncIterator[Any]:
        async for outputs in self.client.stream(inputs, parameters=request.parameters):
            yield outputs

    @hookimpl
    async def unload(self) -> None:
        await self.client.close()

"""Names KServe 0.21 imports from vLLM's rerank protocol; unused here (../../../../README.md)."""

from ...openai.engine.protocol import OpenAIBaseModel


class RerankRequest(OpenAIBaseModel):
    model: str | None = None


class RerankResponse(OpenAIBaseModel):
    pass

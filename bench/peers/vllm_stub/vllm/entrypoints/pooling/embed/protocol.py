"""Names KServe 0.21 imports from vLLM's embeddings protocol; unused here (../../../../README.md)."""

from ...openai.engine.protocol import OpenAIBaseModel


class EmbeddingRequest(OpenAIBaseModel):
    model: str | None = None


class EmbeddingResponse(OpenAIBaseModel):
    pass


class EmbeddingResponseData(OpenAIBaseModel):
    pass


class EmbeddingCompletionRequest(EmbeddingRequest):
    pass

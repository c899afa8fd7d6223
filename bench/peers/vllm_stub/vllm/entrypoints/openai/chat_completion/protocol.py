"""Names KServe 0.21 imports from vLLM's chat protocol; unused on the completions route (../../../../README.md)."""

from ..engine.protocol import OpenAIBaseModel


class ChatCompletionRequest(OpenAIBaseModel):
    model: str | None = None
    stream: bool | None = False


class ChatCompletionResponseChoice(OpenAIBaseModel):
    pass


class ChatCompletionLogProb(OpenAIBaseModel):
    pass


class ChatCompletionLogProbs(OpenAIBaseModel):
    pass


class ChatCompletionStreamResponse(OpenAIBaseModel):
    pass


class ChatCompletionResponseStreamChoice(OpenAIBaseModel):
    pass


class ChatMessage(OpenAIBaseModel):
    pass


class ChatCompletionLogProbsContent(OpenAIBaseModel):
    pass


class ChatCompletionResponse(OpenAIBaseModel):
    pass

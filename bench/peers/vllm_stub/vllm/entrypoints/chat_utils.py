"""Names KServe 0.21 imports from vLLM's chat_utils, as type hints only (../../README.md)."""

from typing import Any

ChatCompletionContentPartParam = dict[str, Any]
CustomChatCompletionMessageParam = dict[str, Any]
ChatCompletionMessageParam = dict[str, Any]
ChatCompletionToolMessageParam = dict[str, Any]
ChatCompletionContentPartTextParam = dict[str, Any]
ChatCompletionAssistantMessageParam = dict[str, Any]
ConversationMessage = dict[str, Any]

"""From vLLM 0.24.0's vllm/entrypoints/openai/engine/protocol.py (Apache-2.0, Copyright contributors to the vLLM
project): the classes a streamed completion uses, verbatim but for the logger."""

import logging
import uuid
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

logger = logging.getLogger("vllm")


def random_uuid() -> str:
    return f"{uuid.uuid4().hex}"


class OpenAIBaseModel(BaseModel):
    # OpenAI API does allow extra fields
    model_config = ConfigDict(extra="allow")

    # Cache class field names
    field_names: ClassVar[set[str] | None] = None

    @model_validator(mode="wrap")
    @classmethod
    def __log_extra_fields__(cls, data, handler):
        result = handler(data)
        if not isinstance(data, dict):
            return result
        field_names = cls.field_names
        if field_names is None:
            # Get all class field names and their potential aliases
            field_names = set()
            for field_name, field in cls.model_fields.items():
                field_names.add(field_name)
                if alias := getattr(field, "alias", None):
                    field_names.add(alias)
            cls.field_names = field_names

        # Compare against both field names and aliases
        if any(k not in field_names for k in data):
            logger.debug(
                "The following fields were present in the request but ignored: %s",
                data.keys() - field_names,
            )
        return result


class PromptTokenUsageInfo(OpenAIBaseModel):
    cached_tokens: int | None = None
    multimodal_tokens: dict[str, int] | None = None


class UsageInfo(OpenAIBaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: PromptTokenUsageInfo | None = None


class StreamOptions(OpenAIBaseModel):
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


# Imported by KServe, unused on the completions route.
class DeltaMessage(OpenAIBaseModel):
    pass


class ModelCard(OpenAIBaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "vllm"


class ModelList(OpenAIBaseModel):
    object: str = "list"
    data: list[ModelCard] = []

"""OpenAI-compatible requests, as KServe's OpenAI routes and vLLM take them: decoded and checked, pure.

``completions``, ``chat/completions`` and ``embeddings`` bodies become a
``Generation`` or an ``EmbeddingsRequest``, every field the host acts on
checked against OpenAI's own ranges before any hook runs; a field outside them
is an ``InvalidField`` (400) naming OpenAI's ``param``, so the SDK's
``BadRequestError`` says which. Fields the host does not act on (penalties,
logprobs, tools...) are checked for their type only, and unknown ones ignored,
as vLLM does. The answers' bodies, and ``StopScanner``, which cuts generated
text at the ``stop`` sequences, are ``openai_responses``'.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional, cast

import numpy as np

from ..errors import InvalidInput, quoted
from ..request import Generation
from . import jsonio


def routes_root(environ: Mapping[str, str] = os.environ) -> str:
    """Where the OpenAI-compatible routes are: ``/openai/v1``, the prefix from ``KSERVE_OPENAI_ROUTE_PREFIX``
    as KServe reads it."""
    return "/" + environ.get("KSERVE_OPENAI_ROUTE_PREFIX", "openai").strip("/") + "/v1"


Encoding = Literal["float", "base64"]
ROUTES = ("completions", "chat/completions")
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOPS = 4  # OpenAI's own limit on `stop`
MAX_N = 128
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on one embeddings request's `input`


class InvalidField(InvalidInput):
    """A 400 that names the request's field at fault (OpenAI's ``param``: ``"temperature"``,
    ``"messages[1].content"``) and, optionally, OpenAI's ``code`` for what is wrong with it."""

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.param = param
        self.code = code

    def __reduce__(self):
        return (type(self), (self.message, self.param, self.code))


@dataclass
class EmbeddingsRequest:
    texts: list[str]
    encoding_format: Encoding = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


def decode_completion(body: jsonio.Buffer, route: str) -> tuple[str, Generation]:
    """(model name, Generation) of a ``completions`` or ``chat/completions`` body; InvalidField says what is wrong."""
    if route not in ROUTES:
        raise ValueError(f"no such completions route: {route!r}")
    payload = _object(body)
    model = _model(payload)
    chat = route == "chat/completions"
    _check_ignored(payload, _CHAT_IGNORED if chat else _COMPLETIONS_IGNORED)
    stream = bool(_typed(payload, "stream", bool, "a boolean"))
    generation = Generation(
        route=route,
        prompt=None if chat else _prompt(payload),
        messages=_messages(payload) if chat else None,
        max_tokens=_max_tokens(payload, chat),
        temperature=_number(payload, "temperature", 0.0, 2.0, 1.0),
        top_p=_number(payload, "top_p", 0.0, 1.0, 1.0),
        stop=_stop(payload),
        n=_integer(payload, "n", 1, MAX_N) or 1,
        seed=_integer(payload, "seed"),
        user=_typed(payload, "user", str, "a string"),
        stream=stream,
        include_usage=_include_usage(payload, stream),
    )
    return model, generation


def decode_embeddings(body: jsonio.Buffer) -> tuple[str, EmbeddingsRequest]:
    """(model name, EmbeddingsRequest) of an ``embeddings`` body; InvalidField says what is wrong."""
    payload = _object(body)
    model = _model(payload)
    encoding = payload.get("encoding_format")
    if encoding is None:
        encoding = "float"
    elif encoding not in ("float", "base64"):
        raise InvalidField(f"'encoding_format' must be 'float' or 'base64', not {quoted(encoding)}",
                           "encoding_format", "invalid_value")
    return model, EmbeddingsRequest(
        texts=_embedding_texts(payload.get("input")),
        encoding_format=cast(Encoding, encoding),
        dimensions=_integer(payload, "dimensions", 1),
        user=_typed(payload, "user", str, "a string"),
    )


def shortened(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """The first ``dimensions`` components of each vector, L2-normalised again, as OpenAI's ``dimensions`` gives
    them; InvalidField when the model's vectors are not that long."""
    if dimensions > vectors.shape[1]:
        raise InvalidField(f"'dimensions' is {dimensions}, more than this model's {vectors.shape[1]}",
                           "dimensions", "invalid_value")
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    # A zero vector stays zero rather than becoming NaN.
    return np.ascontiguousarray(cut / np.where(norms > 0, norms, 1), dtype=np.float32)


# Fields the host does not act on, checked for their JSON type only: a client's mistake is still a 400.
_COMMON_IGNORED = {
    "logit_bias": dict, "response_format": dict, "tools": list, "tool_choice": (str, dict),
    "parallel_tool_calls": bool, "metadata": dict, "store": bool, "service_tier": str,
}
_COMPLETIONS_IGNORED = {**_COMMON_IGNORED, "logprobs": int, "echo": bool, "best_of": int, "suffix": str}
_CHAT_IGNORED = {**_COMMON_IGNORED, "logprobs": bool, "top_logprobs": int, "reasoning_effort": str,
                 "modalities": list, "prediction": dict}
_JSON_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", dict: "an object",
               list: "an array"}


def _object(body: jsonio.Buffer) -> dict:
    try:
        payload = jsonio.loads(body)
    except InvalidInput as exc:
        raise InvalidField(exc.message) from None
    if not isinstance(payload, dict):
        raise InvalidField(f"the request body must be a JSON object, not {_kind(payload)}")
    return payload


def _model(payload: dict) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise _wrong_type("model", "a non-empty string", model)
    return model


def _prompt(payload: dict) -> str:
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            if len(prompt) == 1:
                return prompt[0]
            raise InvalidField(f"'prompt' holds {len(prompt)} prompts; this server takes one per request",
                               "prompt", "unsupported_value")
        if all(isinstance(item, (int, list)) and not isinstance(item, bool) for item in prompt):
            raise InvalidField("'prompt' as token ids is not supported here; send text", "prompt",
                               "unsupported_value")
    raise _wrong_type("prompt", "a string or a list of one string", prompt)


def _messages(payload: dict) -> list[dict[str, str]]:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _wrong_type("messages", "a non-empty array of messages", messages)
    return [_message(message, f"messages[{index}]") for index, message in enumerate(messages)]


def _message(message: object, where: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise _wrong_type(where, "an object", message)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidField(f"'{where}.role' must be one of {', '.join(ROLES)}, not {quoted(role)}",
                           f"{where}.role", "invalid_value")
    return {"role": role, "content": _content(message.get("content"), f"{where}.content")}


def _content(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _wrong_type(where, "a string or a non-empty array of text parts", content)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else part
            raise InvalidField(f"'{where}[{index}]' is not a text part ({quoted(kind)}); only text is supported "
                               "here", f"{where}[{index}]", "unsupported_value")
        if not isinstance(part.get("text"), str):
            raise _wrong_type(f"{where}[{index}].text", "a string", part.get("text"))
        texts.append(part["text"])
    return "\n".join(texts)  # as vLLM joins a message's text parts


def _max_tokens(payload: dict, chat: bool) -> Optional[int]:
    # Chat's max_completion_tokens replaced max_tokens; when both are sent it wins, as in vLLM.
    newer = _integer(payload, "max_completion_tokens", 1) if chat else None
    older = _integer(payload, "max_tokens", 1)
    return newer if newer is not None else older


def _stop(payload: dict) -> list[str]:
    stop = payload.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(item, str) and item for item in stops):
        raise _wrong_type("stop", "a non-empty string or an array of non-empty strings", stop)
    if len(stops) > MAX_STOPS:
        raise InvalidField(f"'stop' holds {len(stops)} sequences, more than {MAX_STOPS}", "stop", "invalid_value")
    return stops


def _include_usage(payload: dict, stream: bool) -> bool:
    options = _typed(payload, "stream_options", dict, "an object")
    if options is None:
        return False
    if not stream:
        raise InvalidField("'stream_options' is only allowed when 'stream' is true", "stream_options",
                           "invalid_value")
    return bool(_typed(options, "include_usage", bool, "a boolean", "stream_options.include_usage"))


def _embedding_texts(texts: object) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, list) or not texts:
        raise _wrong_type("input", "a string or a non-empty array of strings", texts)
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise InvalidField(f"'input' holds {len(texts)} texts, more than {MAX_EMBEDDING_INPUTS}", "input",
                           "invalid_value")
    for index, text in enumerate(texts):
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise InvalidField("'input' as token ids is not supported here; send text", "input",
                               "unsupported_value")
        if not isinstance(text, str) or not text:
            raise _wrong_type(f"input[{index}]" if len(texts) > 1 else "input", "a non-empty string", text)
    return texts


def _check_ignored(payload: dict, types: dict) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        _number(payload, name, -2.0, 2.0, 0.0)
    for name, kinds in types.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        value = payload.get(name)
        if value is not None and not any(_is(value, kind) for kind in kinds):
            raise _wrong_type(name, " or ".join(_JSON_TYPES[kind] for kind in kinds), value)


def _typed(payload: dict, name: str, kind: type, what: str, param: Optional[str] = None):
    value = payload.get(name)
    if value is not None and not _is(value, kind):
        raise _wrong_type(param or name, what, value)
    return value


def _is(value: object, kind: type) -> bool:
    # JSON's true is no count: Python's bool is an int, OpenAI's boolean is not an integer.
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _integer(payload: dict, name: str, low: Optional[int] = None, high: Optional[int] = None) -> Optional[int]:
    value = payload.get(name)
    if value is None:
        return None
    if not _is(value, int):
        raise _wrong_type(name, "an integer", value)
    _in_range(name, value, low, high)
    return value


def _number(payload: dict, name: str, low: float, high: float, default: float) -> float:
    value = payload.get(name)
    if value is None:
        return default
    if not (_is(value, int) or isinstance(value, float)):
        raise _wrong_type(name, "a number", value)
    _in_range(name, value, low, high)
    return float(value)


def _in_range(name: str, value: float, low: Optional[float], high: Optional[float]) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise InvalidField(f"'{name}' must be {bounds}, not {quoted(value)}", name, "invalid_value")


def _wrong_type(param: str, what: str, value: object) -> InvalidField:
    if value is None:  # only required fields get here with none
        return InvalidField(f"'{param}' is required: {what}", param, "missing_required_parameter")
    return InvalidField(f"'{param}' must be {what}, not {_kind(value)} {quoted(value)}", param, "invalid_type")


def _kind(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)

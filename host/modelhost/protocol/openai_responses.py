"""OpenAI-compatible answers, pure: response bodies, server-sent events and error objects, shaped as the
``openai`` SDK's own types read them; and the text that ``stop`` sequences let through.

Re-exported by ``openai``, which decodes the requests.
"""

import base64
import uuid
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from . import jsonio

FinishReason = Literal["stop", "length"]
DONE = b"data: [DONE]\n\n"  # the stream's last event: the SDK stops reading at it
_OBJECTS = {  # route -> (a response's object, a streamed chunk's)
    "completions": ("text_completion", "text_completion"),
    "chat/completions": ("chat.completion", "chat.completion.chunk"),
}
_ID_PREFIXES = {"completions": "cmpl-", "chat/completions": "chatcmpl-"}
# The SDK picks its exception class by the HTTP status alone; the type is for whoever reads the body.
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    408: "timeout_error", 409: "conflict_error", 413: "invalid_request_error",
    422: "unprocessable_entity_error", 429: "rate_limit_error", 501: "not_implemented_error",
    502: "bad_gateway_error", 503: "service_unavailable_error", 504: "timeout_error",
}


@dataclass
class Usage:
    """Token counts, as OpenAI's ``usage`` gives them; the host adds to them as pieces come."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


def completion_id(route: str) -> str:
    """A new id for one answer: ``cmpl-<hex>`` or ``chatcmpl-<hex>``, as OpenAI's ids look."""
    return _ID_PREFIXES[route] + uuid.uuid4().hex


def completion_response(route: str, completion_id: str, created: int, model: str,
                        choices: list[tuple[str, FinishReason]], usage: Usage) -> bytes:
    """A whole (not streamed) answer: each choice's (text, finish_reason), in order."""
    chat = _is_chat(route)
    return jsonio.dumps({
        "id": completion_id, "object": _OBJECTS[route][0], "created": created, "model": model,
        "choices": [_choice(chat, index, text, reason) for index, (text, reason) in enumerate(choices)],
        "usage": usage.as_dict(),
    })


def chunk(route: str, completion_id: str, created: int, model: str, index: int, text: str,
          finish_reason: Optional[FinishReason] = None, first: bool = False) -> bytes:
    """One streamed piece of choice ``index`` as a server-sent event. A chat's choice opens with a chunk
    (``first``) whose delta names the role, as OpenAI's do, and ends with one that carries its finish_reason."""
    if _is_chat(route):
        delta: dict[str, str] = {"role": "assistant"} if first else {}
        if text or first:
            delta["content"] = text
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return _event({"id": completion_id, "object": _OBJECTS[route][1], "created": created, "model": model,
                   "choices": [choice]})


def usage_chunk(route: str, completion_id: str, created: int, model: str, usage: Usage) -> bytes:
    """The stream's usage, after every choice has ended, when ``stream_options.include_usage`` asks for it."""
    return _event({"id": completion_id, "object": _OBJECTS[route][1], "created": created, "model": model,
                   "choices": [], "usage": usage.as_dict()})


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "internal_server_error")


def error_body(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> bytes:
    """OpenAI's error object, ``{"error": {"message", "type", "param", "code"}}``."""
    return jsonio.dumps({"error": {"message": message, "type": error_type(status), "param": param, "code": code}})


def error_event(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> bytes:
    """An error after the stream has begun (its status already sent): the SDK raises APIError on this event."""
    return b"data: " + error_body(status, message, param, code) + b"\n\n"


def embeddings_response(model: str, vectors: np.ndarray, encoding_format: str, prompt_tokens: int) -> bytes:
    """``vectors`` (N, D), one row per input text, as floats or as base64 of their little-endian float32 bytes
    (what the SDK asks for by default, and decodes with ``np.frombuffer(..., "float32")``)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    as_base64 = encoding_format == "base64"
    return jsonio.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": index,
                  "embedding": base64.b64encode(row.tobytes()).decode("ascii") if as_base64 else row}
                 for index, row in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })


def checked_vectors(result: object, rows: int) -> np.ndarray:
    """What ``embed`` returned as float32 vectors, one row per text; ValueError says why it is not that."""
    try:
        vectors = np.asarray(result)
    except ValueError as exc:  # ragged lists
        raise ValueError(f"embed returned vectors of different lengths: {exc}") from None
    if vectors.dtype.kind not in "fiu":
        raise ValueError(f"embed returned {vectors.dtype} values, where embeddings are numbers")
    if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.shape[1] == 0:
        raise ValueError(f"embed returned shape {vectors.shape} for {rows} texts; it must be ({rows}, dimensions)")
    # float32 is the wire's precision: the SDK's default (base64) decodes float32, so floats say the same.
    with np.errstate(over="ignore"):  # past float32's range is infinite, refused just below
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError("embed returned values that are not finite (NaN, infinite, or past float32's range)")
    return vectors


def models_list(names: list[str], created: int) -> bytes:
    return jsonio.dumps({"object": "list", "data": [_model(name, created) for name in names]})


def model_object(name: str, created: int) -> bytes:
    return jsonio.dumps(_model(name, created))


class StopScanner:
    """Cuts generated text at the first of its ``stops``: neither a stop sequence nor what follows it is sent.

    ``feed`` takes each piece and returns the text that may be sent now and
    whether a stop was reached; text that may be the start of a stop sequence
    is held back until the next pieces tell, and ``flush`` gives it up when the
    generation ends otherwise.
    """

    def __init__(self, stops: list[str]):
        self.stops = [stop for stop in stops if stop]
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        if self.stopped:
            return "", True
        text = self.held + text
        found = [at for at in (text.find(stop) for stop in self.stops) if at >= 0]
        if found:
            self.held, self.stopped = "", True
            return text[:min(found)], True
        # Holding the longest end that may begin a stop is what keeps a stop out of text already sent.
        keep = max(_partial_stop(text, stop) for stop in self.stops)
        self.held = text[len(text) - keep:]
        return text[:len(text) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _partial_stop(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (without being all of it)."""
    start = max(0, len(text) - len(stop) + 1)
    while (start := text.find(stop[0], start)) >= 0:
        if stop.startswith(text[start:]):
            return len(text) - start
        start += 1
    return 0


def _is_chat(route: str) -> bool:
    if route not in _OBJECTS:
        raise ValueError(f"no such completions route: {route!r}")
    return route == "chat/completions"


def _choice(chat: bool, index: int, text: str, finish_reason: FinishReason) -> dict:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": finish_reason}
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def _model(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "modelhost"}


def _event(payload: dict) -> bytes:
    return b"data: " + jsonio.dumps(payload) + b"\n\n"

"""OpenAI-compatible routes, as KServe serves them: under ``/openai/v1/`` (the prefix from
``KSERVE_OPENAI_ROUTE_PREFIX``), ``completions``, ``chat/completions``, ``embeddings`` and ``models``.

The model is named in the body, not the path: an exchange here is admitted
once its body is read and checked. Its errors, from a bad field to a model not
served here, are in OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``), so the ``openai`` SDK raises its own exception for each status.
A completion streams when it asks to (``"stream": true``): OpenAI's chunks as
server-sent events, the usage chunk when ``stream_options.include_usage``
asks for it, and ``data: [DONE]``.
"""

import time
from typing import Any

import tornado.httputil

from ..errors import ModelhostError, ModelNotFound
from ..generation import Part
from ..inference import InferenceCall
from ..protocol import openai, openai_responses as responses
from ..request import Headers, InferenceRequest
from .exchange import JSON, Codec, Exchange, InferenceRoute
from .handling import BaseHandler


def route_error(error: ModelhostError) -> bytes:
    return responses.error_body(error.status, error.message, getattr(error, "param", None),
                                getattr(error, "code", None))


class CompletionEvents:
    """One completion's answer: its chunks as they come, or the whole completion once every choice has ended."""

    def __init__(self, call: InferenceCall):
        assert call.request is not None and call.request.generation is not None  # decoded by this route
        self.generation = call.request.generation
        self.route = self.generation.route
        self.model = call.name
        self.streamed = self.generation.stream
        self.id = responses.completion_id(self.route)
        self.created = int(time.time())
        self.usage = responses.Usage()
        self.opened: set[int] = set()  # the choices whose first chunk has gone

    def count(self, part: Part) -> None:
        self.usage.completion_tokens += part.tokens
        if part.prompt_tokens is not None:
            self.usage.prompt_tokens = part.prompt_tokens

    def part(self, part: Part) -> bytes:
        self.count(part)
        first = part.choice not in self.opened
        self.opened.add(part.choice)
        opening = responses.chunk(self.route, self.id, self.created, self.model, part.choice, "", first=True) \
            if first and part.outputs and self.route == "chat/completions" else b""
        return opening + responses.chunk(self.route, self.id, self.created, self.model, part.choice, part.outputs,
                                         part.finish_reason, first=first and not opening)

    def end(self) -> bytes:
        usage = responses.usage_chunk(self.route, self.id, self.created, self.model, self.usage) \
            if self.generation.include_usage else b""
        return usage + responses.DONE

    def failure(self, error: ModelhostError) -> bytes:
        return responses.error_event(error.status, error.message) + responses.DONE

    def whole(self, parts: list[Part]) -> bytes:
        texts: dict[int, list[str]] = {}
        reasons: dict[int, Any] = {}
        for part in parts:
            self.count(part)
            texts.setdefault(part.choice, []).append(part.outputs)
            if part.finish_reason:
                reasons[part.choice] = part.finish_reason
        choices = [("".join(texts[index]), reasons.get(index, "stop")) for index in sorted(texts)]
        return responses.completion_response(self.route, self.id, self.created, self.model, choices, self.usage)


def encode_embeddings(vectors: Any, call: InferenceCall) -> tuple[bytes, dict]:
    """The model's vectors (checked where it ran), shortened when the request asks and the model allows it."""
    assert call.request is not None and call.runner is not None
    asked = call.request.parameters
    dimensions, width = asked.get("dimensions"), vectors.shape[1]
    if dimensions is not None and dimensions != width:
        if dimensions > width or not call.runner.metadata.get("embeddings", {}).get("shortenable"):
            allowed = f"at most {width}" if dimensions > width else f"{width} (its vectors cannot be shortened)"
            raise openai.InvalidField(f"'dimensions' must be {allowed} for model {call.name!r}", "dimensions")
        vectors = openai.shortened(vectors, dimensions)
    return responses.embeddings_response(call.name, vectors, asked["encoding_format"], 0), JSON


class OpenAIRoute(InferenceRoute):
    """``completions``, ``chat/completions`` or ``embeddings``: each request an ``OpenAIExchange``."""

    def __init__(self, path: str, serving: Any):
        if path == "embeddings":
            codec = Codec("openai", unnamed, encode_embeddings, error_body=route_error)
        else:
            codec = Codec("openai", unnamed, lambda body, call: (body, JSON), CompletionEvents, error_body=route_error)
        super().__init__(codec, serving)
        self.path = path

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> "OpenAIExchange":
        return OpenAIExchange(self, request, None, None)

    def decode(self, body: bytearray) -> tuple[str, InferenceRequest]:
        if self.path == "embeddings":
            name, embeddings = openai.decode_embeddings(body)
            return name, InferenceRequest(protocol="openai", verb="embed", instances=embeddings.texts, parameters={
                "encoding_format": embeddings.encoding_format, "dimensions": embeddings.dimensions})
        name, generation = openai.decode_completion(body, self.path)
        return name, InferenceRequest(protocol="openai", verb="generate", generation=generation)


def unnamed(*args: Any) -> InferenceRequest:
    raise AssertionError("an OpenAI route's body is decoded with its model's name (OpenAIRoute.decode)")


class OpenAIExchange(Exchange):
    """An exchange whose model is named in its body: admitted once the body is decoded."""

    route: OpenAIRoute

    def finish(self) -> None:
        self.route.serving.body_deadlines.received(self)
        if self.call.responded:
            return
        try:
            name, request = self.route.decode(self.body.whole())
            request.headers = Headers(self.request.headers.get_all())
            self.call.admit(name)
            self.call.run(None, lambda: request)
        except Exception as error:
            self.call.fail(error)


class ModelsHandler(BaseHandler):
    """``GET models`` and ``models/NAME``: the models served, as OpenAI lists them."""

    def get(self, name=None):
        created = int(self.application.settings["serving"].started)
        if name is None:
            body = responses.models_list(self.repository.names(), created)
        elif name in self.repository.names():
            body = responses.model_object(name, created)
        else:
            raise ModelNotFound(f"model {name!r} is not served here")
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def write_error(self, status_code: int, **kwargs):
        error = kwargs.get("exc_info", (None, None))[1]
        if not isinstance(error, ModelhostError):
            error = ModelhostError(self._reason)
            error.status = status_code
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.finish(route_error(error))

"""The V2 routes' answers in parts: Triton's ``generate`` and ``generate_stream``, MLServer's ``infer_stream``,
and ``infer`` on a model that generates (its parts joined into one answer).

A part is what ``Model.respond`` made of V2 output tensors: a dict of arrays, or a ``Reply`` holding one.
"""

from typing import Any

from ..errors import ModelhostError
from ..inference import InferenceCall
from ..protocol import generate, jsonio, v2
from ..replies import Reply
from ..request import InferenceRequest
from .exchange import Codec, encode_v2


class V2Events:
    """``generate_route``: Triton's flat generate responses; else V2 inference responses."""

    def __init__(self, call: InferenceCall, streamed: bool, generate_route: bool = False):
        self.call = call
        self.streamed = streamed
        self.generate_route = generate_route

    def part(self, part: Any) -> bytes:
        outputs = getattr(part, "outputs", part)  # a generation's Part, or a model's one result
        if self.generate_route:
            return generate.event(generate_body(outputs, self.call))
        payload = outputs.payload if isinstance(outputs, Reply) else outputs
        assert self.call.request is not None  # a call with parts has run its request
        body, _ = v2.encode_response(payload, self.call.request, self.call.name, self.call.model_version())
        return generate.event(body)

    def end(self) -> bytes:
        return b""

    def failure(self, error: ModelhostError) -> bytes:
        return generate.event(jsonio.dumps({"error": error.message}))

    def whole(self, parts: list) -> Any:
        payloads = [getattr(part, "outputs", part) for part in parts]
        return generate.joined([payload.payload if isinstance(payload, Reply) else payload for payload in payloads])


def generate_body(outputs: Any, call: InferenceCall) -> bytes:
    assert call.request is not None  # a call with a result has run its request
    payload = outputs.payload if isinstance(outputs, Reply) else outputs
    return jsonio.dumps(generate.generate_response(v2.requested(payload, call.request, call.name), call.name,
                                                   call.model_version()))


def encode_generate(result: Any, call: InferenceCall) -> tuple[bytes, dict]:
    """``/generate``'s one answer."""
    return generate_body(result, call), {"Content-Type": "application/json"}


def decode_v2(body, headers, limits, call: InferenceCall) -> InferenceRequest:
    return v2.decode_request(body, headers.get(v2.HEADER_LENGTH), limits)


def decode_generate(body, headers, limits, call: InferenceCall) -> InferenceRequest:
    assert call.runner is not None  # found before the body is decoded
    return generate.decode_generate_request(body, call.runner.metadata, limits)


def decode_infer_stream(body, headers, limits, call: InferenceCall) -> InferenceRequest:
    request = decode_v2(body, headers, limits, call)
    request.verb = "generate"
    return request


V2 = Codec("v2", decode_v2, encode_v2, lambda call: V2Events(call, streamed=False))
GENERATE = Codec("v2", decode_generate, encode_generate, lambda call: V2Events(call, False, generate_route=True))
GENERATE_STREAM = Codec("v2", decode_generate, encode_generate, lambda call: V2Events(call, True, generate_route=True),
                        streams=True)
INFER_STREAM = Codec("v2", decode_infer_stream, encode_v2, lambda call: V2Events(call, True), streams=True)

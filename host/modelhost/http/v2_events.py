"""The V2 routes' answers in parts: Triton's ``generate`` and ``generate_stream``, MLServer's ``infer_stream``,
and ``infer`` on a model that generates (its parts joined into one answer).

A part is what ``Model.respond`` made of V2 output tensors: a dict of arrays, or a ``Reply`` holding one.
"""

from functools import cached_property
from typing import Any, Optional

import numpy as np

from ..errors import ModelhostError
from ..generation import TEXT_OUTPUT
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
        text = lone_text(outputs)
        frame = self.text_frame if text is not None else None
        if frame is not None:
            return b"".join((frame[0], jsonio.dumps(text), frame[1]))
        return self.event(outputs)

    @cached_property
    def text_frame(self) -> Optional[tuple[bytes, bytes]]:
        """A text piece's event before and after its text's JSON; None where the request asks for outputs by name
        or as binary.

        A stream's text pieces differ in their text alone: the rest is made once, by ``event``, so that each
        piece's bytes are the ones ``event`` would make, for a fraction of its time.
        """
        request = self.call.request
        assert request is not None  # a call with parts has run its request
        if request.requested_outputs is not None or request.parameters.get("binary_data_output"):
            return None
        event = self.event({TEXT_OUTPUT: np.array([b""], dtype=object)})
        # The empty text's "" follows its key, which is the only one of that name: JSON text has no bare quotes.
        key = jsonio.dumps(TEXT_OUTPUT) + b":" if self.generate_route else b'"data":['
        at = event.index(key) + len(key)
        return event[:at], event[at + len(b'""'):]

    def event(self, outputs: Any) -> bytes:
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


def lone_text(outputs: Any) -> Optional[str]:
    """The text of a text piece (``generation.carried``'s, or outputs alike); None for other outputs, and for BYTES
    that are not UTF-8 (``event`` names that error)."""
    array = outputs.get(TEXT_OUTPUT) if type(outputs) is dict and len(outputs) == 1 else None
    if array is None or array.dtype != object or array.shape != (1,):
        return None
    element = array[0]
    try:
        return element if isinstance(element, str) else element.decode("utf-8")
    except UnicodeDecodeError:
        return None


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

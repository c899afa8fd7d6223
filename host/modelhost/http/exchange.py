"""The inference routes: one HTTP exchange per request, without a RequestHandler.

Most of a model server's traffic is ``POST .../infer`` and ``:predict``. A
Tornado RequestHandler runs each request as a task, on a later turn of the
loop, and builds a page's worth of machinery around it; an exchange here is
answered in the turn its body arrives when its model runs inline, and by a
callback on its outcome when the model answers later. It applies HTTP's rules
as ``handling`` states them for every route (request ids, the bearer token,
``max_buffer_size``, body deadlines, errors as ``{"error": "..."}``), decodes
and encodes with ``protocol``, and leaves the rest of the request's life to
its ``inference.InferenceCall``.
"""

import asyncio
import email.utils
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Protocol, cast

import tornado.httputil
import tornado.routing

from ..errors import BodyTimeout, InvalidInput, MethodNotAllowed, ModelhostError
from ..inference import InferenceCall
from ..replies import Reply
from ..protocol import v1, v2
from ..protocol.jsonio import Buffer
from ..protocol.limits import RequestLimits
from ..request import Headers, InferenceRequest
from ..runtime.streams import PieceStream
from .encoding import SMALLEST_COMPRESSED, encoded_answer, request_coding
from . import streaming
from .handling import Body, Serving, check_length, check_token, error_body, origin_of, request_id_for
from .streaming import Events

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Codec:
    """A protocol's request decoder and response encoder; ``name`` labels its metrics.

    A route whose answers may come in parts (a model that generates) has ``events``, which makes each call's
    ``streaming.Events``; ``error_body`` is how the route says an error (OpenAI's routes have a shape of their own).
    """

    name: str
    # (body, headers, limits, the call, which knows its runner) -> the request
    decode: Callable[[Buffer, tornado.httputil.HTTPHeaders, RequestLimits, InferenceCall], InferenceRequest]
    # (what Model.respond made of the result, the call it answers) -> (body, headers)
    encode: Callable[[Any, InferenceCall], tuple[bytes, dict]]
    events: Optional[Callable[[InferenceCall], Events]] = None
    streams: bool = False  # answered as events even when the model answers once (a model that only predicts)
    error_body: Callable[[ModelhostError], bytes] = lambda error: error_body(error.message)


def encode_v1(result: Any, call: InferenceCall) -> tuple[bytes, dict]:
    if isinstance(result, Reply):
        return result.payload, {**result.headers, **JSON}
    return result, JSON


def encode_v2(result: Any, call: InferenceCall) -> tuple[bytes, dict]:
    assert call.request is not None  # a call that has a result has run its request
    if not isinstance(result, Reply):
        return v2.encode_response(result, call.request, call.name, call.model_version())
    body, headers = v2.encode_response(result.payload, call.request, call.name, call.model_version(),
                                       result.parameters, result.output_parameters)
    return body, {**result.headers, **headers}


V1 = Codec("v1", lambda body, headers, limits, call: v1.decode_request(body), encode_v1)
V1_EXPLAIN = Codec("v1", lambda body, headers, limits, call: v1.decode_request(body, "explain"), V1.encode)



class Connection(Protocol):
    """The request's connection as an exchange uses it: ``answer.Answer``."""

    def set_close_callback(self, callback: Optional[Callable[[], None]]) -> None: ...

    def write_answer(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None: ...

    def write_headers(self, start_line: tornado.httputil.ResponseStartLine,
                      headers: tornado.httputil.HTTPHeaders) -> Awaitable[None]: ...

    def write(self, chunk: bytes) -> Awaitable[None]: ...

    def finish(self) -> None: ...


class InferenceRoute(tornado.routing.Router):
    """An inference path of the app (``make_app`` routes it): each request to it becomes an ``Exchange``."""

    def __init__(self, codec: Codec, serving: Serving):
        self.codec = codec
        self.serving = serving
        self.date = ""
        self.date_second = 0

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> "Exchange":
        path = kwargs["path_kwargs"]  # the path's parts, as bytes, percent-decoded
        return Exchange(self, request, path["name"], path.get("version"))

    def http_date(self) -> str:
        # Formatting the date costs more than the rest of the headers; it changes once a second.
        now = int(time.time())
        if now != self.date_second:
            self.date, self.date_second = email.utils.formatdate(now, usegmt=True), now
        return self.date


class Exchange(tornado.httputil.HTTPMessageDelegate):
    """One inference request over HTTP, from its headers to its answer.

    Its call is told the outcome exactly once: an error as soon as one is
    found (while the body still arrives, for a body too large), the result, or
    a 503 when the server stops first; ``respond`` writes it, unless the
    client has gone.
    """

    def __init__(self, route: InferenceRoute, request: tornado.httputil.HTTPServerRequest,
                 name_in_path: Optional[bytes], version_in_path: Optional[bytes]):
        serving = route.serving
        self.route = route
        self.request = request
        self.name_in_path = name_in_path
        self.version_in_path = version_in_path
        self.request_id = request_id_for(request.headers, serving.request_ids)
        self.call = serving.inference.begin(route.codec.name, origin_of(request, self.request_id), self.respond,
                                            request.headers)
        self.body = Body(serving.max_buffer_size)
        self.closed = False
        # An answer in parts, while it is written (streaming): held here, as the loop keeps only weak references
        # to its tasks.
        self.sending: Optional[asyncio.Future] = None
        # Tornado's type is the abstract HTTPConnection; the server's are answer.Answers.
        self.connection = cast(Connection, request.connection)
        self.connection.set_close_callback(self.on_connection_close)

    def headers_received(self, start_line, headers) -> None:
        serving = self.route.serving
        serving.body_deadlines.expect(self)
        try:
            if serving.auth_token:
                check_token(headers, serving.auth_token)
            if self.request.method != "POST":
                raise MethodNotAllowed(["POST"])
            check_length(headers, serving.max_buffer_size)
            self.body.coding = request_coding(headers)
            if self.name_in_path is not None:  # else named in the body (openai_routes), admitted once it is read
                self.call.admit(path_part(self.name_in_path, "model name"))
        except Exception as error:
            self.call.fail(error)

    def data_received(self, chunk: bytes) -> None:
        refusal = self.body.add(chunk)
        if refusal:  # a chunked body, its size unknown until now
            self.call.fail(refusal)

    def finish(self) -> None:
        self.route.serving.body_deadlines.received(self)
        if self.call.responded:
            return
        try:
            version = None if self.version_in_path is None else path_part(self.version_in_path, "model version")
            self.call.run(version, self.decoded, self.body.most_decoded)
        except Exception as error:
            self.call.fail(error)

    def decoded(self) -> InferenceRequest:
        headers = self.request.headers
        request = self.route.codec.decode(self.body.whole(), headers, self.route.serving.limits, self.call)
        request.headers = Headers(headers.get_all())
        return request

    def respond(self, result, error: Optional[BaseException]) -> None:
        """Write the outcome the call was told (an encoding error raises, and the call responds with it); a
        route whose answers may come in parts writes them as they come (``streaming``)."""
        codec = self.route.codec
        if error is None and codec.events is not None and (codec.streams or isinstance(result, PieceStream)):
            streaming.answer(self, result, codec.events(self.call))
            return
        self.answer(result, error)

    def answer(self, result, error: Optional[BaseException]) -> None:
        """Write one answer: the result encoded, or the error."""
        if error is None:
            body, headers = self.route.codec.encode(result, self.call)
            status = 200
            # Only an answer large enough to compress looks for Accept-Encoding: a small one pays nothing for it.
            if len(body) >= SMALLEST_COMPRESSED and "Accept-Encoding" in self.request.headers:
                body, headers = encoded_answer(body, headers, self.request.headers["Accept-Encoding"])
        elif isinstance(error, ModelhostError):
            status, body, headers = error.status, self.route.codec.error_body(error), {**error.headers, **JSON}
        else:
            status, body, headers = 500, error_body("Internal Server Error"), JSON
        if not self.closed:
            self.write(status, body, headers)
        self.call.finish(status)

    def write(self, status: int, body: bytes, headers: dict) -> None:
        self.route.serving.body_deadlines.received(self)  # answered before its body came, perhaps
        lines = [*headers.items(), ("Content-Length", str(len(body))), ("Date", self.route.http_date()),
                 ("X-Request-Id", self.request_id)]
        self.connection.write_answer(status, tornado.httputil.responses.get(status, "Unknown"), lines, body)
        self.connection.set_close_callback(None)

    def finished_stream(self, status: int) -> None:
        """The events are written (``streaming.send``): the answer ends, and so does the call."""
        if not self.closed:
            self.connection.set_close_callback(None)
            self.connection.finish()
        self.call.finish(status)

    def body_late(self, error: BodyTimeout) -> None:
        """``BodyDeadlines`` writes the 408 and closes the connection; the call is answered with it, so that its
        access line and metrics say 408, not the 499 of a client that left."""
        self.closed = True
        self.call.fail(error)

    def on_connection_close(self) -> None:
        self.closed = True
        if not self.call.responded or self.call.stream is not None:  # a generation's parts may be under way
            self.call.withdraw()


def path_part(in_path: bytes, what: str) -> str:
    try:
        return in_path.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} in the path is not UTF-8: {in_path[:40]!r}") from None

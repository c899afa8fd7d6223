"""HTTP's rules for every request, whatever its endpoint, stated once.

Bodies gathered up to ``max_buffer_size`` (``Body``), and decoded within it
when sent in gzip or deflate (``encoding``), a request id for the logs, the
optional bearer token, errors as ``{"error": "..."}`` with their status and
headers (a 405 names the methods its path takes), body deadlines, and the
access line. ``BaseHandler`` applies them to the routes that Tornado's
RequestHandlers serve; ``exchange.Exchange`` to the inference routes.
"""

import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional, Protocol

import tornado.httputil
import tornado.ioloop
import tornado.web

from .. import logs
from ..auth import check_bearer
from ..errors import BodyTimeout, MethodNotAllowed, ModelhostError, PayloadTooLarge, shortened
from ..inference import Inference
from ..protocol import jsonio
from ..protocol.limits import DEFAULT_LIMITS, RequestLimits
from .encoding import Coding, request_coding
from .answer import Answer

VERBS = ("get", "head", "post", "delete", "patch", "put", "options")


@dataclass
class Serving:
    """What handling a request needs of the server; ``make_app`` builds one per serving process."""

    inference: Inference  # the model repository and the metrics with it
    max_buffer_size: int
    auth_token: Optional[str]
    request_ids: Iterator[str]
    body_deadlines: "BodyDeadlines"
    docs_pages: bool = False  # the browsable API's pages are served (http.docs)
    limits: RequestLimits = DEFAULT_LIMITS  # what one inference request may hold beyond its bytes
    started: float = field(default_factory=time.time)  # when the server began serving (OpenAI's model.created)


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Reads bodies in chunks so that one over ``max_buffer_size`` is refused, not buffered.

    A declared length over the limit is refused from the headers; a chunked
    body, once it outgrows the limit (``connection`` leaves that count to the
    handler, so that the answer is always this 413).
    """

    # Health checks answer without the bearer token: kubelet's probes and load balancers carry none.
    open_to_all = False

    def initialize(self, serving: Serving):
        self.inference = serving.inference
        self.repository = serving.inference.repository
        self.metrics = serving.inference.metrics
        self.max_buffer_size = serving.max_buffer_size
        self.auth_token = serving.auth_token
        self.body_deadlines = serving.body_deadlines
        self.gathered = Body(serving.max_buffer_size)

    def set_default_headers(self):
        # Called before initialize, and again when send_error clears the headers: the id is made once.
        if not hasattr(self, "request_id"):
            serving = self.application.settings["serving"]
            self.request_id = request_id_for(self.request.headers, serving.request_ids)
        self.set_header("x-request-id", self.request_id)

    def prepare(self):
        self.body_deadlines.expect(self)
        # Every line logged while this request is handled carries its id (logs.RequestIdFilter): each request
        # runs in a task of its own here, so the id can live in a context variable.
        logs.request_id.set(self.request_id)
        if self.auth_token and not self.open_to_all:
            check_token(self.request.headers, self.auth_token)
        check_length(self.request.headers, self.max_buffer_size)
        self.gathered.coding = request_coding(self.request.headers)

    def data_received(self, chunk: bytes):
        refusal = self.gathered.add(chunk)
        if refusal:  # a chunked body, its size unknown until now
            logs.refused(refusal.status, refusal.message, origin_of(self.request, self.request_id))
            self.send_error(refusal.status, exc_info=(type(refusal), refusal, None))

    @property
    def body(self) -> bytes:
        self.body_deadlines.received(self)
        if self.gathered.overflowed:  # answered 413 as it arrived
            raise tornado.web.Finish()
        return bytes(self.gathered.whole())

    def refuse_method(self, *args, **kwargs):
        """Every verb a handler does not define: 405, naming those it does (RFC 9110)."""
        raise MethodNotAllowed(self.allowed_methods())

    get = head = post = delete = patch = put = options = refuse_method

    def allowed_methods(self) -> list[str]:
        return [verb.upper() for verb in VERBS if getattr(type(self), verb) is not getattr(BaseHandler, verb)]

    def on_finish(self):
        self.body_deadlines.received(self)

    def body_late(self, error: BodyTimeout) -> None:
        logs.refused(error.status, error.message, origin_of(self.request, self.request_id))

    def write_json(self, payload: object, status: int = 200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(jsonio.dumps(payload))

    def write_error(self, status_code: int, **kwargs):
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ModelhostError):
            self.set_status(error.status)
            message = error.message
            for header, value in error.headers.items():
                self.set_header(header, value)
        elif isinstance(error, tornado.web.HTTPError) and error.log_message:
            message = error.log_message % error.args
        else:
            message = self._reason
        if self.get_status() == 405 and not isinstance(error, MethodNotAllowed):  # a verb Tornado does not know
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.write_json({"error": message}, self.get_status())

    def log_exception(self, typ, value, tb):
        if isinstance(value, ModelhostError):
            logs.refused(value.status, value.message, origin_of(self.request, self.request_id))
        else:
            super().log_exception(typ, value, tb)


def request_id_for(headers: Mapping[str, str], request_ids: Iterator[str]) -> str:
    """The client's ``x-request-id``, or a new one."""
    return headers.get("x-request-id") or next(request_ids)


def check_token(headers: Mapping[str, str], auth_token: str) -> None:
    check_bearer(headers.get("Authorization", ""), auth_token)


def check_length(headers: Mapping[str, str], max_buffer_size: int) -> None:
    length = headers.get("Content-Length")
    # One that is not a number ("abc", "1, 2") is Tornado's to refuse, with 400, once it reads the body.
    if length is not None and length.isdecimal() and int(length) > max_buffer_size:
        raise too_large(max_buffer_size)


def too_large(max_buffer_size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than max_buffer_size ({max_buffer_size} bytes)")


def error_body(message: str) -> bytes:
    return jsonio.dumps({"error": message})


def origin_of(request: tornado.httputil.HTTPServerRequest, request_id: str) -> logs.Origin:
    return logs.Origin(request.method or "", shortened(request.uri or ""), request.remote_ip or "", request_id)


def log_request(handler: BaseHandler) -> None:
    """The application's access line for the routes its RequestHandlers serve."""
    origin = origin_of(handler.request, getattr(handler, "request_id", ""))
    logs.access(origin, handler.get_status(), handler.request.request_time())


class Body:
    """A request's body, gathered up to ``max_buffer_size``; what comes past it is dropped and refused.

    One sent compressed (``coding``) is gathered as it comes and decoded by ``whole``, where its decoded size is
    bounded by ``max_buffer_size`` too.
    """

    __slots__ = ("max_buffer_size", "chunks", "size", "coding")

    def __init__(self, max_buffer_size: int):
        self.max_buffer_size = max_buffer_size
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self.coding: Optional[Coding] = None  # its Content-Encoding (encoding.request_coding), set from the headers

    def add(self, chunk: bytes) -> Optional[PayloadTooLarge]:
        """Keep the chunk; or, the moment the body grows larger than allowed, the refusal that answers it."""
        overflowed_before = self.overflowed
        self.size += len(chunk)
        if not self.overflowed:
            self.chunks.append(chunk)
            return None
        return None if overflowed_before else too_large(self.max_buffer_size)

    @property
    def overflowed(self) -> bool:
        return self.size > self.max_buffer_size

    @property
    def most_decoded(self) -> int:
        """The most bytes ``whole`` can hand on: the size, or for a compressed body, what that can inflate to."""
        return self.size if self.coding is None else self.coding.most_decoded(self.size, self.max_buffer_size)

    def whole(self) -> bytearray:
        """The body in one writable buffer, so that the binary tensors viewing it are a plugin's to change.

        A body of known length comes as one (``connection.Connection``); a chunked one, in pieces. A
        compressed one is decoded: InvalidInput when it is not what its coding says, PayloadTooLarge when it
        inflates past ``max_buffer_size``.
        """
        if len(self.chunks) == 1 and isinstance(self.chunks[0], bytearray):
            body = self.chunks[0]
        else:
            body = bytearray().join(self.chunks)
        if self.coding is None:
            return body
        decoded = self.coding.decode(body, self.max_buffer_size)
        if decoded is None:
            raise too_large(self.max_buffer_size)
        self.chunks, self.coding = [decoded], None  # decoded once; the compressed bytes are let go
        return decoded


class HasRequest(Protocol):
    request: tornado.httputil.HTTPServerRequest
    request_id: str

    def body_late(self, error: BodyTimeout) -> None:
        """Its body is late: ``BodyDeadlines`` answers ``error`` and closes the connection once this returns."""


class BodyDeadlines:
    """Answers 408 to requests whose body is late, and closes their connections; checked once a second.

    Tornado's own ``body_timeout`` wraps every body read in a timer and two
    futures, a cost each request pays; here a request costs an entry in a dict.
    A request counts from its headers until its handler reads the body, or finishes.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadlines: dict[HasRequest, float] = {}
        self.sweeper: Optional[tornado.ioloop.PeriodicCallback] = None

    def expect(self, handler: HasRequest) -> None:
        if self.sweeper is None:  # started on first use, inside the serving process's loop
            self.sweeper = tornado.ioloop.PeriodicCallback(self.close_late, 1000)
            self.sweeper.start()
        self.deadlines[handler] = time.monotonic() + self.seconds

    def received(self, handler: HasRequest) -> None:
        self.deadlines.pop(handler, None)

    def close_late(self) -> None:
        now = time.monotonic()
        for handler in [handler for handler, deadline in self.deadlines.items() if deadline < now]:
            del self.deadlines[handler]
            connection = handler.request.connection
            if not isinstance(connection, Answer) or connection.closed:  # the client left: no one to answer
                continue
            error = BodyTimeout(f"the request body did not arrive within body_timeout ({self.seconds:g}s)")
            handler.body_late(error)
            headers = [("Content-Type", "application/json"), ("X-Request-Id", handler.request_id)]
            connection.answer_and_close(error.status, headers, error_body(error.message))

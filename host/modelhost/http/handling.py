"""What every HTTP request goes through, whatever its endpoint.

Bodies read in chunks up to ``max_buffer_size``, a request id for the logs, the
optional bearer token, errors as ``{"error": "..."}`` with their status and
headers, and the access line. ``BaseHandler`` applies them to the routes that
Tornado's RequestHandlers serve; ``inference.Exchange`` applies the same
functions to the inference routes.
"""

import hmac
import itertools
import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Protocol

import tornado.httputil
import tornado.ioloop
import tornado.web

from .. import logs
from ..errors import ModelhostError, PayloadTooLarge, Unauthorized
from ..metrics import Metrics
from ..protocol import jsonio
from ..repository import ModelRepository

access_log = logging.getLogger("modelhost.access")
log = logging.getLogger("modelhost")


@dataclass
class Serving:
    """What handling a request needs of the server; ``make_app`` builds one per serving process."""

    repository: ModelRepository
    metrics: Metrics
    max_buffer_size: int
    auth_token: Optional[str]
    request_ids: Iterator[str]
    body_deadlines: "BodyDeadlines"


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Reads bodies in chunks so that one over ``max_buffer_size`` is refused, not buffered.

    A declared length over the limit is refused from the headers; a chunked
    body, once it outgrows the limit (``httpserver`` leaves that count to the
    handler, so that the answer is always this 413).
    """

    # Health checks answer without the bearer token: kubelet's probes and load balancers carry none.
    open_to_all = False

    def initialize(self, serving: Serving):
        self.repository = serving.repository
        self.metrics = serving.metrics
        self.max_buffer_size = serving.max_buffer_size
        self.auth_token = serving.auth_token
        self.body_deadlines = serving.body_deadlines
        self.chunks: list[bytes] = []
        self.received = 0
        # Answered before the handler is done: a body found too large.
        self.answered_early = False

    def set_default_headers(self):
        # Called before initialize, and again when send_error clears the headers: the id is made once.
        if not hasattr(self, "request_id"):
            serving = self.application.settings["serving"]
            self.request_id = request_id_for(self.request.headers, serving.request_ids)
        self.set_header("x-request-id", self.request_id)

    def prepare(self):
        self.body_deadlines.expect(self)
        # Every line logged while this request is handled carries its id (logs.RequestIdFilter).
        logs.request_id.set(self.request_id)
        if self.auth_token and not self.open_to_all:
            check_token(self.request.headers, self.auth_token)
        check_length(self.request.headers, self.max_buffer_size)

    def data_received(self, chunk: bytes):
        self.received += len(chunk)
        if self.received <= self.max_buffer_size:
            self.chunks.append(chunk)
        elif not self.answered_early:  # a chunked body, its size unknown until now
            self.answered_early = True
            error = too_large(self.max_buffer_size)
            log_refused(error, self.request, self.request_id)
            self.send_error(error.status, exc_info=(type(error), error, None))

    @property
    def body(self) -> bytes:
        self.body_deadlines.received(self)
        if self.answered_early:
            raise tornado.web.Finish()
        return b"".join(self.chunks)

    def on_finish(self):
        self.body_deadlines.received(self)

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
        if self.get_status() == 405:  # RFC 9110: a 405 names the methods the path takes
            self.set_header("Allow", ", ".join(method for method in self.SUPPORTED_METHODS if self.takes(method)))
        self.write_json({"error": message}, self.get_status())

    def takes(self, method: str) -> bool:
        name = method.lower()
        return getattr(type(self), name) is not getattr(tornado.web.RequestHandler, name)

    def log_exception(self, typ, value, tb):
        if isinstance(value, ModelhostError):
            log_refused(value, self.request, self.request_id)
        else:
            super().log_exception(typ, value, tb)


def request_id_for(headers: Mapping[str, str], request_ids: Iterator[str]) -> str:
    """The client's ``x-request-id``, or a new one."""
    return headers.get("x-request-id") or next(request_ids)


def check_token(headers: Mapping[str, str], auth_token: str) -> None:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    # compare_digest takes as long whatever the token's first wrong byte: no timing oracle.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), auth_token.encode()):
        raise Unauthorized("a valid 'Authorization: Bearer' token is required")


def check_length(headers: Mapping[str, str], max_buffer_size: int) -> None:
    length = headers.get("Content-Length")
    # One that is not a number ("abc", "1, 2") is Tornado's to refuse, with 400, once it reads the body.
    if length is not None and length.isdecimal() and int(length) > max_buffer_size:
        raise too_large(max_buffer_size)


def too_large(max_buffer_size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than max_buffer_size ({max_buffer_size} bytes)")


def error_body(message: str) -> bytes:
    return jsonio.dumps({"error": message})


def request_summary(request: tornado.httputil.HTTPServerRequest) -> str:
    return f"{request.method} {request.uri} ({request.remote_ip})"


def log_refused(error: ModelhostError, request: tornado.httputil.HTTPServerRequest, request_id: str) -> None:
    log.warning("%d %s: %s", error.status, request_summary(request), error.message, extra={"request_id": request_id})


def log_request(handler: BaseHandler) -> None:
    """The application's access line for the routes its RequestHandlers serve."""
    log_access(handler.request, handler.get_status(), getattr(handler, "request_id", ""))


def log_access(request: tornado.httputil.HTTPServerRequest, status: int, request_id: str,
               model: Optional[str] = None, timings: Optional[dict] = None) -> None:
    """The access line: status, request, model, latency and the time each stage took, with the request's id."""
    if not access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        return
    milliseconds = 1000 * request.request_time()
    stages = {stage: round(1000 * spent, 3) for stage, spent in (timings or {}).items()}
    fields = {"status": status, "method": request.method, "path": request.uri,
              "remote_ip": request.remote_ip, "latency_ms": round(milliseconds, 3)}
    if model:
        fields.update(model=model, stages_ms=stages)
    # Logger.info would also look up its caller's file and line, which say nothing here: the record is made directly.
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, "%d %s%s %.2fms%s",
        (status, request_summary(request), f" model={model}" if model else "", milliseconds,
         "".join(f" {stage}={spent:.2f}ms" for stage, spent in stages.items())),
        None, extra={"fields": fields, "request_id": request_id},
    ))


def request_id_source() -> Iterator[str]:
    """Ids for requests that bring none: random for this process, then counted, with no system call per request."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{count:016x}" for count in itertools.count())


class HasRequest(Protocol):
    request: tornado.httputil.HTTPServerRequest


class BodyDeadlines:
    """Closes the connections of requests whose body is late, checked once a second.

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
            handler.request.connection.close()

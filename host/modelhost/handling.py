"""What every HTTP request goes through, whatever its endpoint.

Bodies read in chunks up to ``max_buffer_size``, a request id for the logs, the
optional bearer token, errors as ``{"error": "..."}`` with their status and
headers, and the access line. Requests that run a model are also counted in
flight, withdrawn when their client leaves, and answered 503 when a stopping
server will not wait for them.
"""

import hmac
import itertools
import logging
import os
import time
from typing import Iterator, Optional

import tornado.ioloop
import tornado.web

from . import logs
from .errors import ModelhostError, PayloadTooLarge, ServerShuttingDown, Unauthorized
from .metrics import Metrics
from .protocol import jsonio
from .repository import ModelRepository
from .request import InferenceRequest

access_log = logging.getLogger("modelhost.access")
log = logging.getLogger("modelhost")


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Reads bodies in chunks so that one over ``max_buffer_size`` is refused, not buffered.

    The server's own cap is twice that, so a chunked body that outgrows the
    limit still gets this handler's 413 before the server drops the connection.
    """

    # Health checks answer without the bearer token: kubelet's probes and load balancers carry none.
    open_to_all = False

    def initialize(self, repository: ModelRepository, metrics: Metrics, max_buffer_size: int,
                   auth_token: Optional[str]):
        self.repository = repository
        self.metrics = metrics
        self.max_buffer_size = max_buffer_size
        self.auth_token = auth_token
        self.body_deadlines: BodyDeadlines = self.application.settings["body_deadlines"]
        self.chunks: list[bytes] = []
        self.received = 0
        # Answered before the handler is done: a body found too large, or a stopping server's 503.
        self.answered_early = False

    def set_default_headers(self):
        # Called before initialize, and again when send_error clears the headers: the id is made once.
        if not hasattr(self, "request_id"):
            self.request_id = self.request.headers.get("x-request-id") or next(self.application.settings["request_ids"])
        self.set_header("x-request-id", self.request_id)

    def prepare(self):
        self.body_deadlines.expect(self)
        # Every line logged while this request is handled carries its id (logs.RequestIdFilter).
        logs.request_id.set(self.request_id)
        if self.auth_token and not self.open_to_all:
            self.check_token()
        length = self.request.headers.get("Content-Length")
        # One that is not a number ("abc", "1, 2") is Tornado's to refuse, with 400, once it reads the body.
        if length is not None and length.isdecimal() and int(length) > self.max_buffer_size:
            raise self.too_large()

    def check_token(self):
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        # compare_digest takes as long whatever the token's first wrong byte: no timing oracle.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.auth_token.encode()):
            raise Unauthorized("a valid 'Authorization: Bearer' token is required")

    def data_received(self, chunk: bytes):
        self.received += len(chunk)
        if self.received <= self.max_buffer_size:
            self.chunks.append(chunk)
        elif not self.answered_early:  # a chunked body, its size unknown until now
            self.answered_early = True
            error = self.too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))

    @property
    def body(self) -> bytes:
        self.body_deadlines.received(self)
        if self.answered_early:
            raise tornado.web.Finish()
        return b"".join(self.chunks)

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than max_buffer_size ({self.max_buffer_size} bytes)")

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
            log.warning("%d %s: %s", value.status, self._request_summary(), value.message)
        else:
            super().log_exception(typ, value, tb)


class InferenceHandler(BaseHandler):
    """A request that runs a model: in flight from its headers on, so that a stopping server waits for it.

    Counted per model in the metrics, when the model is one this server serves.
    """

    protocol = ""
    model = None  # set in prepare, when the path names a model this server serves
    inference: InferenceRequest = None  # once the body is decoded

    def prepare(self):
        super().prepare()
        self.repository.admit(self, self.path_kwargs["name"])
        self.model = self.path_kwargs["name"] if self.path_kwargs["name"] in self.repository.runners else None
        if self.model:
            self.metrics.request_started(self.model)

    def on_finish(self):
        super().on_finish()
        self.repository.release(self)
        if self.model:
            timings = self.inference.timings if self.inference else {}
            self.metrics.request_done(self.model, self.protocol, self.get_status(), self.request.request_time(), timings)

    async def infer(self, runner, request: InferenceRequest):
        request.request_id = self.request_id
        self.inference = request
        result = await runner.infer(request)
        if self.answered_early:
            raise tornado.web.Finish()
        return result

    def on_connection_close(self):
        super().on_connection_close()
        self.repository.release(self)
        if self.inference:  # the queue answers it 499 instead of running it, if it has not started
            self.inference.withdrawn = True

    def answer_late(self):
        """503 at once, whether the body is still arriving or the model still busy: the server will not wait."""
        self.answered_early = True
        error = ServerShuttingDown("the server stopped before this request was answered")
        self.send_error(error.status, exc_info=(type(error), error, None))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access line: status, request, model, latency and the time each stage took, with the request's id."""
    if not access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        return
    milliseconds = 1000 * handler.request.request_time()
    model = getattr(handler, "model", None)
    inference = getattr(handler, "inference", None)
    stages = {stage: round(1000 * spent, 3) for stage, spent in inference.timings.items()} if inference else {}
    fields = {"status": handler.get_status(), "method": handler.request.method, "path": handler.request.uri,
              "remote_ip": handler.request.remote_ip, "latency_ms": round(milliseconds, 3)}
    if model:
        fields.update(model=model, stages_ms=stages)
    # Logger.info would also look up its caller's file and line, which say nothing here: the record is made directly.
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, "%d %s%s %.2fms%s",
        (fields["status"], handler._request_summary(), f" model={model}" if model else "", milliseconds,
         "".join(f" {stage}={spent:.2f}ms" for stage, spent in stages.items())),
        None, extra={"fields": fields, "request_id": getattr(handler, "request_id", "")},
    ))


def request_id_source() -> Iterator[str]:
    """Ids for requests that bring none: random for this process, then counted, with no system call per request."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{count:016x}" for count in itertools.count())


class BodyDeadlines:
    """Closes the connections of requests whose body is late, checked once a second.

    Tornado's own ``body_timeout`` wraps every body read in a timer and two
    futures, a cost each request pays; here a request costs an entry in a dict.
    A request counts from its headers until its handler reads the body, or finishes.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadlines: dict[tornado.web.RequestHandler, float] = {}
        self.sweeper: Optional[tornado.ioloop.PeriodicCallback] = None

    def expect(self, handler: tornado.web.RequestHandler) -> None:
        if self.sweeper is None:  # started on first use, inside the serving process's loop
            self.sweeper = tornado.ioloop.PeriodicCallback(self.close_late, 1000)
            self.sweeper.start()
        self.deadlines[handler] = time.monotonic() + self.seconds

    def received(self, handler: tornado.web.RequestHandler) -> None:
        self.deadlines.pop(handler, None)

    def close_late(self) -> None:
        now = time.monotonic()
        for handler in [handler for handler, deadline in self.deadlines.items() if deadline < now]:
            del self.deadlines[handler]
            handler.request.connection.close()

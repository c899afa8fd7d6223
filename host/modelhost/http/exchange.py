"""The inference routes: one HTTP exchange per request, without a RequestHandler.

Most of a model server's traffic is ``POST .../infer`` and ``:predict``. A
Tornado RequestHandler runs each request as a task, on a later turn of the
loop, and builds a page's worth of machinery around it; an exchange here is
answered in the turn its body arrives when its model runs inline, and by a
callback on its outcome when the model answers later. It does what
``handling.BaseHandler`` does for every route (request ids, the bearer token,
``max_buffer_size``, body deadlines, errors as ``{"error": "..."}``, the access
line) through the same functions, and what only inference requests need:
counted in flight from their headers on, withdrawn when their client leaves,
answered 503 when a stopping server will not wait for them.
"""

import asyncio
import email.utils
import functools
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

import tornado.httputil
import tornado.routing

from ..errors import ClientGone, InvalidInput, MethodNotAllowed, ModelhostError, ServerShuttingDown
from .handling import (Serving, check_length, check_token, error_body, log_access, log_refused, request_id_for,
                       request_summary, too_large)
from ..model import served_versions
from ..protocol import v1, v2
from ..request import InferenceRequest

app_log = logging.getLogger("tornado.application")
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Codec:
    """A protocol's request decoder and response encoder; ``name`` labels its metrics."""

    name: str
    decode: Callable[[bytes, tornado.httputil.HTTPHeaders], InferenceRequest]
    # (what Model.respond made of the result, request, model name, model version) -> (body, headers)
    encode: Callable[[object, InferenceRequest, str, Optional[str]], tuple[bytes, dict]]


V1 = Codec("v1", lambda body, headers: v1.decode_request(body), lambda body, request, name, version: (body, JSON))
V2 = Codec("v2", lambda body, headers: v2.decode_request(body, headers.get(v2.HEADER_LENGTH)), v2.encode_response)


class InferenceRoute(tornado.routing.Router):
    """An inference path of the app (``make_app`` routes it): each request to it becomes an ``Exchange``."""

    def __init__(self, codec: Codec, serving: Serving):
        self.codec = codec
        self.serving = serving
        self.date = ""
        self.date_second = 0

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, path_kwargs: dict, **_) -> "Exchange":
        # The path's bytes, percent-decoded.
        return Exchange(self, request, path_kwargs["name"], path_kwargs.get("version"))

    def http_date(self) -> str:
        # Formatting the date costs more than the rest of the headers; it changes once a second.
        now = int(time.time())
        if now != self.date_second:
            self.date, self.date_second = email.utils.formatdate(now, usegmt=True), now
        return self.date


class Exchange(tornado.httputil.HTTPMessageDelegate):
    """One inference request, from its headers to its answer.

    It is answered exactly once: by an error as soon as one is found (while
    the body still arrives, for a body too large), by its result, or by a 503
    when the server stops first. Whatever comes after the answer is dropped.
    """

    def __init__(self, route: InferenceRoute, request: tornado.httputil.HTTPServerRequest, name_in_path: bytes,
                 version_in_path: Optional[bytes]):
        self.route = route
        self.request = request
        self.name_in_path = name_in_path
        self.version_in_path = version_in_path
        self.name = ""
        self.version: Optional[str] = None
        self.request_id = request_id_for(request.headers, route.serving.request_ids)
        self.model: Optional[str] = None  # the name, once known to be served here: counted in its metrics
        self.inference: Optional[InferenceRequest] = None
        self.chunks: list[bytes] = []
        self.received = 0
        self.answered = False
        self.answering_later = False
        request.connection.set_close_callback(self.on_connection_close)

    def headers_received(self, start_line, headers) -> None:
        serving = self.route.serving
        serving.body_deadlines.expect(self)
        try:
            if serving.auth_token:
                check_token(headers, serving.auth_token)
            if self.request.method != "POST":
                raise MethodNotAllowed("Method Not Allowed")
            check_length(headers, serving.max_buffer_size)
            self.name = path_part(self.name_in_path, "model name")
            serving.repository.admit(self, self.name)
        except Exception as error:
            self.fail(error)
            return
        if self.name in serving.repository.runners:
            self.model = self.name
            serving.metrics.request_started(self.name)

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received <= self.route.serving.max_buffer_size:
            self.chunks.append(chunk)
        elif not self.answered:  # a chunked body, its size unknown until now
            self.refuse(too_large(self.route.serving.max_buffer_size))

    def finish(self) -> None:
        self.route.serving.body_deadlines.received(self)
        if self.answered:
            return
        try:
            if self.version_in_path is not None:
                self.version = path_part(self.version_in_path, "model version")
            runner = self.route.serving.repository.get(self.name, self.version)
            request = self.route.codec.decode(whole_body(self.chunks), self.request.headers)
            request.request_id = self.request_id
            self.inference = request
            if runner.inline:  # answered now, in this turn of the loop
                self.answer_result(runner, runner.infer_now(request))
                return
            outcome = runner.submit(request)
        except Exception as error:
            self.fail(error)
            return
        self.answering_later = True
        outcome.add_done_callback(functools.partial(self.answer_outcome, runner))

    def answer_outcome(self, runner, outcome: asyncio.Future) -> None:
        try:
            self.answer_result(runner, outcome.result())
        except Exception as error:
            self.fail(error)

    def answer_result(self, runner, result) -> None:
        if self.answered:  # a 503 from a stopping server went first
            return
        version = self.version or next(iter(served_versions(runner.spec, runner.metadata)), None)
        body, headers = self.route.codec.encode(result, self.inference, self.name, version)
        self.answer(200, body, headers)

    def fail(self, error: Exception) -> None:
        """The error is the request's answer; the server goes on serving."""
        if isinstance(error, ModelhostError):
            self.refuse(error)
            return
        app_log.error("Uncaught exception %s", request_summary(self.request), exc_info=error,
                      extra={"request_id": self.request_id})
        self.answer(500, error_body("Internal Server Error"), JSON)

    def refuse(self, error: ModelhostError) -> None:
        log_refused(error, self.request, self.request_id)
        self.answer_error(error)

    def answer_error(self, error: ModelhostError) -> None:
        self.answer(error.status, error_body(error.message), {**error.headers, **JSON})

    def answer_late(self) -> None:
        """503 at once, whether the body is still arriving or the model still busy: the server will not wait."""
        self.answer_error(ServerShuttingDown("the server stopped before this request was answered"))

    def answer(self, status: int, body: bytes, headers: dict) -> None:
        if self.answered:
            return
        connection = self.request.connection
        headers = tornado.httputil.HTTPHeaders(headers)
        headers["Content-Length"] = str(len(body))
        headers["Date"] = self.route.http_date()
        headers["x-request-id"] = self.request_id
        reason = tornado.httputil.responses.get(status, "Unknown")
        connection.write_headers(tornado.httputil.ResponseStartLine("HTTP/1.1", status, reason), headers, body)
        connection.finish()
        connection.set_close_callback(None)
        self.done(status)

    def done(self, status: int) -> None:
        """Answered, or its client gone before it could be: out of flight, into the metrics and the log."""
        self.answered = True
        serving = self.route.serving
        serving.body_deadlines.received(self)
        serving.repository.release(self)
        timings = self.inference.timings if self.inference else {}
        if self.model:
            serving.metrics.request_done(self.model, self.route.codec.name, status, self.request.request_time(),
                                         timings)
        log_access(self.request, status, self.request_id, self.model, timings)

    def on_connection_close(self) -> None:
        if self.answered:
            return
        if self.inference:  # the queue answers it 499 instead of running it, if it has not started
            self.inference.withdrawn = True
        if self.answering_later:
            self.route.serving.repository.release(self)
        else:  # its body never came: nothing else will answer it
            self.done(ClientGone.status)


def whole_body(chunks: list) -> bytearray:
    """The body in one writable buffer, so that the binary tensors viewing it are a plugin's to change.

    A body of known length comes as one (httpserver.WholeBodyConnection); a chunked one, in pieces.
    """
    if len(chunks) == 1 and isinstance(chunks[0], bytearray):
        return chunks[0]
    return bytearray().join(chunks)


def path_part(in_path: bytes, what: str) -> str:
    try:
        return in_path.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} in the path is not UTF-8: {in_path[:40]!r}") from None

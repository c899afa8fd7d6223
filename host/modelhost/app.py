"""The HTTP layer: decode the request, hand it to the model's runner, encode the answer.

Every error leaves as ``{"error": "..."}`` with the status its exception carries.
"""

import asyncio
import hmac
import logging
import uuid
from typing import Optional

import tornado.web

from . import logs
from .errors import ModelhostError, PayloadTooLarge, ServerShuttingDown, Unauthorized
from .openapi import openapi_document
from .protocol import jsonio, v1, v2
from .metrics import Metrics
from .repository import ModelRepository
from .request import InferenceRequest

access_log = logging.getLogger("modelhost.access")
log = logging.getLogger("modelhost")

MODEL = r"(?P<name>[^/:]+)"
VERSION = r"(?:/versions/(?P<version>[^/]+))?"


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
        self.chunks: list[bytes] = []
        self.received = 0
        self.refused = False

    def set_default_headers(self):
        # Called before initialize, and again when send_error clears the headers: the id is made once.
        if not hasattr(self, "request_id"):
            self.request_id = self.request.headers.get("x-request-id") or uuid.uuid4().hex
        self.set_header("x-request-id", self.request_id)

    def prepare(self):
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
        elif not self.refused:  # a chunked body, its size unknown until now
            self.refused = True
            error = self.too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))

    @property
    def body(self) -> bytes:
        if self.refused:
            raise tornado.web.Finish()
        return b"".join(self.chunks)

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than max_buffer_size ({self.max_buffer_size} bytes)")

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


class NotFoundHandler(BaseHandler):
    def prepare(self):
        super().prepare()
        raise tornado.web.HTTPError(404, "no such path: %s %s", self.request.method, self.request.path)


class LiveHandler(BaseHandler):
    open_to_all = True

    def get(self):
        self.write_json({"status": "alive"} if self.request.path == "/" else {"live": True})


class ServerReadyHandler(BaseHandler):
    open_to_all = True

    def get(self):
        ready = self.repository.all_ready()
        self.write_json({"ready": ready}, 200 if ready else 503)


class V1ModelsHandler(BaseHandler):
    def get(self):
        self.write_json({"models": self.repository.names()})


class InferenceHandler(BaseHandler):
    """A request that runs a model: in flight from its headers on, so that a stopping server waits for it.

    Counted per model in the metrics, when the model is one this server serves.
    """

    protocol = ""
    model = None  # set in prepare, when the path names a model this server serves
    inference: InferenceRequest = None  # once the body is decoded
    answering: asyncio.Future = None  # the runner's answer, awaited
    client_gone = False

    def prepare(self):
        super().prepare()
        self.repository.admit(self.answer_late)
        self.model = self.path_kwargs["name"] if self.path_kwargs["name"] in self.repository.runners else None
        if self.model:
            self.metrics.in_flight.labels(self.model).inc()

    def on_finish(self):
        if self.model:
            self.metrics.in_flight.labels(self.model).dec()
            timings = self.inference.timings if self.inference else {}
            self.metrics.request_done(self.model, self.protocol, self.get_status(), self.request.request_time(), timings)

    async def infer(self, runner, request: InferenceRequest):
        request.request_id = self.request_id
        self.inference = request
        self.answering = asyncio.ensure_future(runner.infer(request))
        try:
            return await self.answering
        except asyncio.CancelledError:
            if not self.client_gone:
                raise
            self.set_status(499, "Client Closed Request")  # nginx's name for it, in the access log and metrics
            raise tornado.web.Finish() from None

    def on_connection_close(self):
        # The client has gone: withdraw its request, which is not run if it has not started.
        super().on_connection_close()
        self.client_gone = True
        if self.answering:
            self.answering.cancel()

    def answer_late(self):
        """503 at once, whether the body is still arriving or the model still busy: the server will not wait."""
        error = ServerShuttingDown("the server stopped before this request was answered")
        self.send_error(error.status, exc_info=(type(error), error, None))


class V1PredictHandler(InferenceHandler):
    protocol = "v1"

    async def post(self, name):
        runner = self.repository.get(name)
        result = await self.infer(runner, v1.decode_request(self.body))
        self.set_header("Content-Type", "application/json")
        self.finish(v1.encode_response(result))


class V2ServerHandler(BaseHandler):
    def get(self):
        self.write_json(v2.server_metadata())


class V2ModelHandler(BaseHandler):
    def get(self, name, version=None):
        runner = self.repository.get_ready(name)
        self.write_json(v2.model_metadata(name, runner.metadata))


class ModelReadyHandler(BaseHandler):
    """``GET /v1/models/NAME`` and ``/v2/models/NAME/ready``: the same answer on both protocols."""

    open_to_all = True

    def get(self, name, version=None):
        ready = self.repository.is_ready(name)
        self.write_json({"name": name, "ready": ready}, 200 if ready else 503)


class V2InferHandler(InferenceHandler):
    protocol = "v2"

    async def post(self, name, version=None):
        runner = self.repository.get(name)
        request = v2.decode_request(self.body, self.request.headers.get(v2.HEADER_LENGTH))
        result = await self.infer(runner, request)
        body, headers = v2.encode_response(result, request, name, runner.metadata)
        for header, value in headers.items():
            self.set_header(header, value)
        self.finish(body)


class MetricsHandler(BaseHandler):
    def get(self):
        body, content_type = self.metrics.render()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.write_json(openapi_document(self.repository.names()))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access line: status, request, model, latency and the time each stage took, with the request's id."""
    if not access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        return
    milliseconds = 1000 * handler.request.request_time()
    model = getattr(handler, "model", None)
    inference = getattr(handler, "inference", None)
    stages = {stage: 1000 * spent for stage, spent in inference.timings.items()} if inference else {}
    fields = {"status": handler.get_status(), "method": handler.request.method, "path": handler.request.uri,
              "remote_ip": handler.request.remote_ip, "latency_ms": round(milliseconds, 3)}
    if model:
        fields.update(model=model, stages_ms={stage: round(spent, 3) for stage, spent in stages.items()})
    access_log.info(
        "%d %s%s %.2fms%s", fields["status"], handler._request_summary(), f" model={model}" if model else "",
        milliseconds, "".join(f" {stage}={spent:.2f}ms" for stage, spent in stages.items()),
        extra={"fields": fields, "request_id": getattr(handler, "request_id", "")},
    )


def make_app(repository: ModelRepository, metrics: Metrics, max_buffer_size: int,
             auth_token: Optional[str] = None) -> tornado.web.Application:
    context = {"repository": repository, "metrics": metrics, "max_buffer_size": max_buffer_size,
               "auth_token": auth_token}
    routes = [
        (r"/", LiveHandler),
        (r"/v1/models", V1ModelsHandler),
        (rf"/v1/models/{MODEL}", ModelReadyHandler),
        (rf"/v1/models/{MODEL}:predict", V1PredictHandler),
        (r"/v2", V2ServerHandler),
        (r"/v2/health/live", LiveHandler),
        (r"/v2/health/ready", ServerReadyHandler),
        (rf"/v2/models/{MODEL}{VERSION}", V2ModelHandler),
        (rf"/v2/models/{MODEL}{VERSION}/ready", ModelReadyHandler),
        (rf"/v2/models/{MODEL}{VERSION}/infer", V2InferHandler),
        (r"/metrics", MetricsHandler),
        (r"/openapi.json", OpenAPIHandler),
    ]
    return tornado.web.Application(
        [(pattern, handler, context) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=context,
        log_function=log_request,
    )

"""The HTTP layer: decode the request, hand it to the model's runner, encode the answer.

Every error leaves as ``{"error": "..."}`` with the status its exception carries.
"""

import logging

import tornado.web

from .errors import ModelhostError, PayloadTooLarge
from .protocol import jsonio, v1, v2
from .repository import ModelRepository

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

    def initialize(self, repository: ModelRepository, max_buffer_size: int):
        self.repository = repository
        self.max_buffer_size = max_buffer_size
        self.chunks: list[bytes] = []
        self.received = 0
        self.refused = False

    def prepare(self):
        length = self.request.headers.get("Content-Length")
        if length is not None and int(length) > self.max_buffer_size:
            raise self.too_large()

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
        elif isinstance(error, tornado.web.HTTPError) and error.log_message:
            message = error.log_message % error.args
        else:
            message = self._reason
        self.write_json({"error": message}, self.get_status())

    def log_exception(self, typ, value, tb):
        if isinstance(value, ModelhostError):
            log.warning("%d %s: %s", value.status, self._request_summary(), value.message)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise tornado.web.HTTPError(404, "no such path: %s %s", self.request.method, self.request.path)


class LiveHandler(BaseHandler):
    def get(self):
        self.write_json({"status": "alive"} if self.request.path == "/" else {"live": True})


class ServerReadyHandler(BaseHandler):
    def get(self):
        ready = self.repository.all_ready()
        self.write_json({"ready": ready}, 200 if ready else 503)


class V1ModelsHandler(BaseHandler):
    def get(self):
        self.write_json({"models": self.repository.names()})


class V1PredictHandler(BaseHandler):
    async def post(self, name):
        runner = self.repository.get(name)
        request = v1.decode_request(self.body)
        result = await runner.infer(request)
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

    def get(self, name, version=None):
        runner = self.repository.get(name)
        self.write_json({"name": name, "ready": runner.ready}, 200 if runner.ready else 503)


class V2InferHandler(BaseHandler):
    async def post(self, name, version=None):
        runner = self.repository.get(name)
        request = v2.decode_request(self.body, self.request.headers.get(v2.HEADER_LENGTH))
        result = await runner.infer(request)
        body, headers = v2.encode_response(result, request, name, runner.metadata)
        for header, value in headers.items():
            self.set_header(header, value)
        self.finish(body)


def log_request(handler: tornado.web.RequestHandler) -> None:
    if access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        access_log.info(
            "%d %s %.2fms", handler.get_status(), handler._request_summary(), 1000 * handler.request.request_time()
        )


def make_app(repository: ModelRepository, max_buffer_size: int) -> tornado.web.Application:
    context = {"repository": repository, "max_buffer_size": max_buffer_size}
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
    ]
    return tornado.web.Application(
        [(pattern, handler, context) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=context,
        log_function=log_request,
    )

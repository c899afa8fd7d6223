"""The HTTP layer: decode the request, hand it to the model's runner, encode the answer.

One handler per endpoint, and for the inference endpoints an ``InferenceRoute``
(``inference``); what they share (body limits, errors, request ids, the access
line) is in ``handling``. Every error leaves as ``{"error": "..."}`` with the
status its exception carries.
"""

from typing import Optional

import tornado.web

from ..inference import Inference
from ..model import served_versions
from ..protocol import openai, v2
from ..protocol.limits import DEFAULT_LIMITS, RequestLimits
from ..protocol.openapi import openapi_document
from ..logs import request_id_source
from .docs import ASSET_PREFIX, DocsAssetHandler, DocsPageHandler, ModelDocumentHandler
from .exchange import V1, V1_EXPLAIN, InferenceRoute
from .openai_routes import ModelsHandler, OpenAIRoute
from .v2_events import GENERATE, GENERATE_STREAM, INFER_STREAM, V2
from .handling import BaseHandler, BodyDeadlines, Serving, log_request
from .shared_memory_routes import ROUTES as SHARED_MEMORY_ROUTES

MODEL = r"(?P<name>[^/:]+)"
VERSION = r"(?:/versions/(?P<version>[^/]+))?"


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


class V2ServerHandler(BaseHandler):
    def get(self):
        self.write_json(v2.server_metadata(self.inference.regions.extensions()))


class V2ModelHandler(BaseHandler):
    def get(self, name, version=None):
        runner = self.repository.get_ready(name, version)
        self.write_json(v2.model_metadata(name, served_versions(runner.spec, runner.metadata), runner.metadata))


class ModelReadyHandler(BaseHandler):
    """``GET /v1/models/NAME`` and ``/v2/models/NAME/ready``: the same answer on both protocols."""

    open_to_all = True

    def get(self, name, version=None):
        ready = self.repository.is_ready(name, version)
        self.write_json({"name": name, "ready": ready}, 200 if ready else 503)


class ModelStatisticsHandler(BaseHandler):
    """Triton's statistics extension: ``GET /v2/models/stats``, and ``/v2/models/NAME[/versions/V]/stats``."""

    def get(self, name=None, version=None):
        self.write_json(self.inference.statistics(name, version))


class ModelConfigHandler(BaseHandler):
    """Triton's model configuration extension: ``GET /v2/models/NAME[/versions/V]/config``."""

    def get(self, name, version=None):
        self.write_json(self.inference.configuration(name, version))


class RepositoryIndexHandler(BaseHandler):
    async def post(self):
        ready_only = v2.decode_repository_index_request(self.body)
        self.write_json(await self.repository.index(ready_only))


class RepositoryLoadHandler(BaseHandler):
    """Answered once the model serves: loaded, or upgraded to the version installed now."""

    async def post(self, name):
        v2.check_repository_change_request(self.body, v2.LOAD_PARAMETERS)
        await self.repository.load(name)
        self.write_json({})


class RepositoryUnloadHandler(BaseHandler):
    """Answered once the model's requests are answered and its runner stopped."""

    async def post(self, name):
        v2.check_repository_change_request(self.body, v2.UNLOAD_PARAMETERS)
        await self.repository.unload(name)
        self.write_json({})


class MetricsHandler(BaseHandler):
    def get(self):
        body, content_type = self.metrics.render()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.write_json(openapi_document(self.repository.names(), self.application.settings["serving"].docs_pages))


def make_app(inference: Inference, max_buffer_size: int, auth_token: Optional[str] = None,
             body_timeout: float = 60.0, docs_pages: bool = True,
             limits: RequestLimits = DEFAULT_LIMITS) -> tornado.web.Application:
    """``docs_pages``: serve the browsable API (``docs``), as KServe's --enable_docs_url."""
    # Made here, in the serving process: forked ones need their own ids and deadlines.
    serving = Serving(inference, max_buffer_size, auth_token, request_ids=request_id_source(),
                      body_deadlines=BodyDeadlines(body_timeout), docs_pages=bool(docs_pages), limits=limits)
    context = {"serving": serving}
    openai_root = openai.routes_root()
    handlers = [
        (r"/", LiveHandler),
        (r"/v1/models", V1ModelsHandler),
        (rf"/v1/models/{MODEL}", ModelReadyHandler),
        (r"/v2", V2ServerHandler),
        (r"/v2/health/live", LiveHandler),
        (r"/v2/health/ready", ServerReadyHandler),
        (r"/v2/models/stats", ModelStatisticsHandler),
        (rf"/v2/models/{MODEL}{VERSION}", V2ModelHandler),
        (rf"/v2/models/{MODEL}{VERSION}/stats", ModelStatisticsHandler),
        (rf"/v2/models/{MODEL}{VERSION}/config", ModelConfigHandler),
        (rf"/v2/models/{MODEL}{VERSION}/ready", ModelReadyHandler),
        (r"/v2/repository/index", RepositoryIndexHandler),
        (rf"/v2/repository/models/{MODEL}/load", RepositoryLoadHandler),
        (rf"/v2/repository/models/{MODEL}/unload", RepositoryUnloadHandler),
        (rf"{openai_root}/models", ModelsHandler),
        (rf"{openai_root}/models/{MODEL}", ModelsHandler),
        (r"/metrics", MetricsHandler),
        (r"/openapi.json", OpenAPIHandler),
        *SHARED_MEMORY_ROUTES,
    ]
    if docs_pages:
        handlers += [
            (r"/docs", DocsPageHandler),
            (rf"{ASSET_PREFIX}(?P<asset_name>[^/]+)", DocsAssetHandler),
            (rf"/v2/models/{MODEL}/docs", DocsPageHandler),
            (rf"/v2/models/{MODEL}/docs/openapi.json", ModelDocumentHandler),
        ]
    # The inference routes first: the application tries its routes in order, and they take most requests.
    inference_routes = [
        (rf"/v1/models/{MODEL}:predict", InferenceRoute(V1, serving)),
        (rf"/v1/models/{MODEL}:explain", InferenceRoute(V1_EXPLAIN, serving)),
        (rf"/v2/models/{MODEL}{VERSION}/infer", InferenceRoute(V2, serving)),
        (rf"/v2/models/{MODEL}{VERSION}/generate", InferenceRoute(GENERATE, serving)),
        (rf"/v2/models/{MODEL}{VERSION}/generate_stream", InferenceRoute(GENERATE_STREAM, serving)),
        (rf"/v2/models/{MODEL}{VERSION}/infer_stream", InferenceRoute(INFER_STREAM, serving)),
        *[(rf"{openai_root}/{path}", OpenAIRoute(path, serving)) for path in ("completions", "chat/completions",
                                                                               "embeddings")],
    ]
    return tornado.web.Application(
        inference_routes + [(pattern, handler, context) for pattern, handler in handlers],
        default_handler_class=NotFoundHandler,
        default_handler_args=context,
        log_function=log_request,
        serving=serving,
    )

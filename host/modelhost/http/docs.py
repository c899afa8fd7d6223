"""The browsable API: Swagger UI over the live OpenAPI documents, at ``/docs`` and at ``/v2/models/NAME/docs``.

Swagger UI rather than Redoc or Scalar: it is the one whose "Try it out"
sends a request from the page and shows the answer (Redoc only reads), its
assets come from PyPI (``swagger-ui-py``; Scalar's come from npm or a CDN),
and it is the page KServe's ``--enable_docs_url`` and MLServer's ``/v2/docs``
show, so their users know it. The assets are served from that installed
package: the page needs no network beyond this server.
"""

from functools import lru_cache
from importlib.resources import files

import tornado.web

from ..protocol.openapi_model import model_document
from .handling import BaseHandler

ASSET_PREFIX = "/docs/static/"
# What the page loads, and nothing else of the package (it also carries Swagger Editor).
ASSET_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{assets}favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{document}", dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"""


class DocsPageHandler(BaseHandler):
    """``GET /docs``: every route; ``GET /v2/models/NAME/docs``: that model's routes, its inputs in the examples."""

    def get(self, name=None):
        if name is None:
            title, document = "modelhost", "/openapi.json"
        else:
            self.repository.get(name)  # 404 for a model not served here
            title, document = f"modelhost: {name}", f"/v2/models/{name}/docs/openapi.json"
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE.format(title=tornado.escape.xhtml_escape(title), assets=ASSET_PREFIX, document=document))


class ModelDocumentHandler(BaseHandler):
    """``GET /v2/models/NAME/docs/openapi.json``: the document that a model's page shows."""

    def get(self, name):
        runner = self.repository.get(name)
        self.write_json(model_document(name, runner.metadata, runner.hooks))


class DocsAssetHandler(BaseHandler):
    """``GET /docs/static/NAME``: one of the page's assets, from the installed swagger-ui-py."""

    def get(self, asset_name):
        if asset_name not in ASSET_TYPES:
            raise tornado.web.HTTPError(404, "no such path: GET %s", self.request.path)
        self.set_header("Content-Type", ASSET_TYPES[asset_name])
        # They change only with the installed package; the ETag that finish() adds revalidates them.
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(asset(asset_name))


@lru_cache(maxsize=len(ASSET_TYPES))
def asset(asset_name: str) -> bytes:
    return (files("swagger_ui") / "static" / asset_name).read_bytes()

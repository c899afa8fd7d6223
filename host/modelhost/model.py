"""One loaded model: its plugin manager and the request pipeline through its hooks.

Everything here is synchronous and runs where the plugin runs, in a thread of
the server or in a worker process; nothing here knows about HTTP.
"""

import logging

from .errors import ModelhostError, PluginError, PluginLoadError
from .plugins import PluginSpec, import_plugin, implemented_hooks, make_plugin_manager, summarize
from .request import InferenceRequest

log = logging.getLogger("modelhost")


class Model:
    def __init__(self, name: str, plugin: object):
        self.name = name
        self.plugin = plugin
        self.pm = make_plugin_manager(name, plugin)
        self.hooks = implemented_hooks(self.pm, plugin)
        self.metadata: dict = {}
        self.settings: dict = {}

    def load(self) -> None:
        self.call("load", name=self.name)
        self.metadata = self.call("metadata", name=self.name) or {}
        self.settings = self.call("settings", name=self.name) or {}

    def infer(self, request: InferenceRequest):
        """preprocess -> predict -> postprocess for one request."""
        inputs = self.call("preprocess", request=request)
        outputs = self.call("predict", inputs=inputs)
        return self.call("postprocess", outputs=outputs, request=request)

    def call(self, hook: str, **kwargs):
        """Call one hook, turning a plugin's own exception into an error that names the hook."""
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except ModelhostError:
            raise
        except Exception as exc:
            log.exception("model %r: %s hook raised", self.name, hook)
            raise PluginError(f"model {self.name!r}: {hook} hook raised {summarize(exc)}") from None


def load_model(spec: PluginSpec) -> Model:
    """Import, validate and load a plugin; PluginLoadError says why it cannot serve."""
    model = Model(spec.name, import_plugin(spec))
    try:
        model.load()
    except ModelhostError as exc:
        raise PluginLoadError(exc.message) from None
    return model

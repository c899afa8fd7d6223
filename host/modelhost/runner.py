"""Model runners: where a model's hooks execute, seen from the event loop.

A runner loads its model, says whether it is ready and runs requests through
it without ever blocking the loop. ``InProcessRunner`` runs the hooks on the
loop's thread pool; a runner for worker processes offers the same interface.
"""

import asyncio
import logging
from typing import Optional

from .errors import ModelNotReady, PluginLoadError
from .model import Model, load_model
from .plugins import PluginSpec
from .request import InferenceRequest

log = logging.getLogger("modelhost")


class InProcessRunner:
    def __init__(self, spec: PluginSpec):
        self.spec = spec
        self.name = spec.name
        self.model: Optional[Model] = None
        self.reason = "loading"

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def metadata(self) -> dict:
        return self.model.metadata if self.model else {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.model = await loop.run_in_executor(None, load_model, self.spec)
        except PluginLoadError as exc:
            self.reason = str(exc)
            log.error("model %r is not ready: %s", self.name, exc)
            return
        log.info(
            "model %r is ready (%s, hooks: %s)",
            self.name, self.spec.distribution or self.spec.target, ", ".join(self.model.hooks),
        )

    def require_ready(self) -> None:
        if self.model is None:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    async def infer(self, request: InferenceRequest):
        self.require_ready()
        return await asyncio.get_running_loop().run_in_executor(None, self.model.infer, request)

    async def stop(self) -> None:
        self.model = None
        self.reason = "stopped"

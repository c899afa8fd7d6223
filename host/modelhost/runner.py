"""Model runners: where a model's hooks execute, seen from the event loop.

A runner loads its model, says whether it is ready and runs requests through
it without ever blocking the loop. ``InProcessRunner`` runs the hooks on the
server's thread pool; ``pool.WorkerPoolRunner`` offers the same interface for
models served from worker processes.
"""

import asyncio
import logging
from concurrent.futures import Executor
from typing import Optional

from .errors import ModelNotReady, ModelTimeout, PluginLoadError
from .model import Model, load_model
from .plugins import PluginSpec
from .request import InferenceRequest

log = logging.getLogger("modelhost")


class InProcessRunner:
    def __init__(self, spec: PluginSpec, timeout: float, executor: Executor):
        self.spec = spec
        self.timeout = timeout
        self.executor = executor
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
            self.model = await loop.run_in_executor(self.executor, load_model, self.spec)
        except PluginLoadError as exc:
            self.reason = str(exc)
            log.error("model %r is not ready: %s", self.name, exc)
            return
        report_ready(self.spec, "the server process", self.model.hooks)

    def require_ready(self) -> None:
        if self.model is None:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    async def infer(self, request: InferenceRequest):
        self.require_ready()
        running = asyncio.get_running_loop().run_in_executor(self.executor, self.model.infer, request)
        try:
            return await asyncio.wait_for(running, self.timeout)
        except asyncio.TimeoutError:
            # A thread cannot be stopped: the hook runs on, but the request is answered.
            raise ModelTimeout(f"model {self.name!r} did not answer within {self.timeout:g}s") from None

    async def stop(self) -> None:
        self.model = None
        self.reason = "stopped"


def report_ready(spec: PluginSpec, where: str, hooks: list[str]) -> None:
    log.info("model %r is ready in %s (%s, hooks: %s)", spec.name, where, spec.distribution or spec.target, ", ".join(hooks))

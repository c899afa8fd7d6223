"""The in-process runner: a model's hooks in the server process, on its thread pool or its event loop.

Requests wait in the model's ``RequestQueue`` for a hook thread, in batches
when the model's settings ask for them. A model whose settings say ``inline``
is run on the event loop itself, at once, with no queue and no thread.
"""

import asyncio
import logging
from concurrent.futures import Executor
from typing import Callable, Optional

from ..errors import ModelhostError, ModelNotReady, ModelTimeout, PluginLoadError
from ..metrics import Metrics
from ..model import Model, load_model
from ..plugins import PluginSpec
from ..request import InferenceRequest
from .batching import RequestQueue, settle, settle_batch
from .runner import report_ready

log = logging.getLogger("modelhost")

UNLOAD_SECONDS = 5.0  # as long as a worker process gets to exit (process.STOP_GRACE_SECONDS)


class InProcessRunner:
    def __init__(self, spec: PluginSpec, options: dict, timeout: float, metrics: Metrics, executor: Executor,
                 threads: int, in_flight: Callable[[], int]):
        self.spec = spec
        self.name = spec.name
        self.options = options  # the command line's settings for this model; they beat the plugin's
        self.timeout = timeout
        self.executor = executor
        self.threads = threads
        self.queue = RequestQueue(spec.name, metrics.batch_size.labels(spec.name).observe, in_flight)
        self.consumers: list[asyncio.Task] = []
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
            self.model = await loop.run_in_executor(self.executor, load_model, self.spec, self.options)
        except PluginLoadError as exc:
            self.reason = str(exc)
            log.error("model %r is not ready: %s", self.name, exc.for_log())
            return
        if self.inline:
            report_ready(self.spec, "the server process, on its event loop", self.model.hooks)
            return
        # Batching wants one consumer, so that requests pile up into its next batch while it predicts.
        count = 1 if self.model.settings.max_batch_size > 1 else self.threads
        self.queue.configure(self.model.settings, count)
        self.consumers = [asyncio.create_task(self.consume()) for _ in range(count)]
        report_ready(self.spec, "the server process", self.model.hooks)

    def require_ready(self) -> None:
        if self.model is None:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    @property
    def inline(self) -> bool:
        """Whether its hooks run on the event loop: cheaper than the trip to a thread and back."""
        return self.model is not None and self.model.settings.inline

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        """The future of the request's outcome; already done for an inline model, which runs it now."""
        self.require_ready()
        model = self.model
        assert model is not None  # require_ready says so
        if not model.settings.inline:
            return self.queue.submit(request)
        outcome = asyncio.get_running_loop().create_future()
        try:
            outcome.set_result(model.infer(request))
        except Exception as error:  # the caller answers it
            outcome.set_exception(error)
        return outcome

    async def consume(self) -> None:
        loop = asyncio.get_running_loop()
        model = self.model  # loaded before consumers start; stop cancels them before letting go of it
        assert model is not None
        while True:
            batch = await self.queue.next_batch()
            if not batch:
                continue
            running = loop.run_in_executor(self.executor, model.infer_batch, [p.request for p in batch])
            try:
                outcomes = await asyncio.wait_for(running, self.timeout)
            except asyncio.TimeoutError:
                # A thread cannot be stopped: the hook runs on, but its requests are answered.
                for pending in batch:
                    settle(pending.outcome, error=ModelTimeout(f"model {self.name!r} did not answer within {self.timeout:g}s"))
                continue
            settle_batch(batch, outcomes, ModelhostError)

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.cancel()
        model, self.model = self.model, None
        self.reason = "stopped"
        self.queue.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))
        if model is not None:
            unloading = asyncio.get_running_loop().run_in_executor(self.executor, model.unload)
            try:
                await asyncio.wait_for(unloading, UNLOAD_SECONDS)
            except asyncio.TimeoutError:  # a thread cannot be stopped: it unloads on, unwaited for
                log.error("model %r: unload did not return within %gs", self.name, UNLOAD_SECONDS)


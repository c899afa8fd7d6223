"""The in-process runner: a model's hooks in the server process, on its thread pool or its event loop.

Requests wait in the model's ``RequestQueue`` for a consumer, in batches when
the model's settings ask for them. A consumer runs a synchronous model's
pipeline on a hook thread, as many consumers as threads (one when batching, so
that requests pile up into its next batch while it predicts); it awaits an
awaiting model's pipeline on the event loop, ``max_concurrency`` consumers. A
model whose settings say ``inline`` is run on the event loop itself, at once,
with no queue and no thread.
"""

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any, Awaitable, Callable, Coroutine, Optional

from .. import generation, sequences
from ..batched import infer_batch
from ..errors import ModelhostError, ModelNotReady, ModelTimeout, PluginLoadError
from ..hookcallers import Offload, offload_to, run_sync
from ..metrics import Metrics
from ..model import Model, ServedElsewhere, import_model
from ..plugins import PluginSpec
from ..predictor import PredictorSettings
from ..request import InferenceRequest
from ..settings import ServingSettings
from .batching import Pending, RequestQueue, fail, run_batches, settle_batch
from .deadline import within
from .messages import LoadFailed
from .runner import Health, report_ready
from .streams import PieceStream, Producers, Streams

log = logging.getLogger("modelhost")

UNLOAD_SECONDS = 5.0  # as long as a worker process gets to exit (process.STOP_GRACE_SECONDS)


class InProcessRunner:
    def __init__(self, spec: PluginSpec, options: dict, timeout: float, metrics: Metrics, executor: Executor,
                 threads: int, in_flight: Callable[[], int], predictor: Optional[PredictorSettings] = None):
        self.spec = spec
        self.name = spec.name
        self.options = options  # the command line's settings for this model; they beat the plugin's
        self.predictor = predictor  # the transformer role's
        self.timeout = timeout
        self.executor = executor
        self.threads = threads
        self.metrics = metrics
        self.queue = RequestQueue(spec.name, metrics.batch_size.labels(spec.name).observe, in_flight)
        self.streams = Streams(spec.name, timeout, self.start_generation)
        self.producers = Producers(spec.name)
        self.consumers: list[asyncio.Task] = []
        self.model: Optional[Model] = None
        self.why_no_model = "loading"
        self.health = Health(f"model {spec.name!r}")
        self.elsewhere: Optional[str] = None
        self.failed: Optional[LoadFailed] = None
        self.described(None)

    def described(self, model: Optional[Model]) -> None:
        """What the runner says of its model: as it loaded, or the defaults until it has (and once it stopped)."""
        self.settings = model.settings if model else ServingSettings()
        self.metadata: dict = model.metadata if model else {}
        self.hooks: list[str] = model.hooks if model else []
        self.verbs: list[str] = model.verbs if model else []

    @property
    def ready(self) -> bool:
        return self.model is not None and self.health.ok

    @property
    def loaded(self) -> bool:
        return self.model is not None

    @property
    def reason(self) -> str:
        return f"not healthy: {self.health.reason}" if self.model is not None else self.why_no_model

    async def start(self) -> None:
        try:
            model = await asyncio.get_running_loop().run_in_executor(self.executor, import_model, self.spec,
                                                                       self.predictor)
            if model.awaits:
                model.offload = offload_to(self.executor)
            await run_on(self.executor, model, model.load(self.options))
        except ServedElsewhere as elsewhere:
            self.elsewhere = elsewhere.runner
            return
        except PluginLoadError as exc:
            self.why_no_model = str(exc)
            self.failed = LoadFailed(str(exc), exc.where)
            return
        settings = model.settings
        if settings.inline:
            model.offload = None
        self.model = model
        self.described(model)
        self.streams.configure(settings.max_concurrency, settings.max_queue_size)
        sequences.attach(model, generation_offload(model, self.executor),
                         lambda report: self.metrics.stepped(self.name, report.sizes, report.queued))
        if model.watched:
            self.health.update(await self.probe(model))
            self.consumers.append(asyncio.create_task(self.watch_health(model)))
        if settings.inline:
            report_ready(self.spec, "the server process, on its event loop", model.hooks)
            return
        if model.awaits:  # one consumer: each batch a task
            self.queue.configure(settings, 1, shares=False)
            self.consumers.append(asyncio.create_task(run_batches(self.queue.next_batch, self.run_batch,
                                                                  settings.max_concurrency)))
        else:  # batching wants one consumer, so that requests pile up into its next batch while it predicts
            count = 1 if settings.max_batch_size > 1 else self.threads
            self.queue.configure(settings, count)
            self.consumers += [asyncio.create_task(run_batches(self.queue.next_batch, self.run_batch, 1))
                               for _ in range(count)]
        report_ready(self.spec, "the server process", model.hooks)

    async def probe(self, model: Model) -> str:
        try:
            return await within(self.timeout, run_on(self.executor, model, model.health()))
        except asyncio.TimeoutError:
            return f"its healthy hook did not answer within {self.timeout:g}s"

    async def watch_health(self, model: Model) -> None:
        while True:
            await asyncio.sleep(model.settings.health_interval_s)
            if self.health.update(await self.probe(model)) and not self.health.ok:
                self.queue.fail_all(ModelNotReady(f"model {self.name!r} is not ready: {self.reason}"))

    def require_ready(self) -> None:
        if not self.ready:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        """The future of the request's outcome; already done for an inline model, which runs it now."""
        self.require_ready()
        model = self.model
        assert model is not None  # require_ready says so
        if request.verb == "generate":
            return self.streams.open(request)
        if not model.settings.inline:
            return self.queue.submit(request)
        if model.awaits:
            return asyncio.ensure_future(model.infer(request))
        outcome = asyncio.get_running_loop().create_future()
        try:
            outcome.set_result(run_sync(model.infer(request)))
        except Exception as error:  # the caller answers it
            outcome.set_exception(error)
        return outcome

    async def run_batch(self, batch: list[Pending]) -> None:
        model = self.model  # loaded before consumers start; stop cancels them before letting go of it
        assert model is not None
        try:
            outcomes = await within(self.timeout, run_on(self.executor, model, infer_batch(model, [p.request for p in batch])))
        except asyncio.TimeoutError:
            # An awaited hook is cancelled; a thread cannot be: its hook runs on, but its requests are answered.
            fail(batch, ModelTimeout(f"model {self.name!r} did not answer within {self.timeout:g}s"))
            return
        except asyncio.CancelledError:
            fail(batch, ModelNotReady(f"model {self.name!r} is shutting down"))
            raise
        settle_batch(batch, outcomes, ModelhostError)

    def start_generation(self, request: InferenceRequest, stream: PieceStream) -> None:
        model = self.model
        assert model is not None  # streams start only while it serves
        offload = generation_offload(model, self.executor)
        self.producers.start(stream, lambda put: generation.generate(model, request, put, offload))

    async def stop(self) -> None:
        self.streams.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))
        await self.producers.stop()
        sequences.detach(self.model)
        for consumer in self.consumers:
            consumer.cancel()
        model, self.model = self.model, None
        self.described(None)
        self.why_no_model = "stopped"
        self.queue.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))
        if model is not None:
            try:
                await within(UNLOAD_SECONDS, run_on(self.executor, model, model.unload()))
            except asyncio.TimeoutError:  # a thread cannot be stopped: it unloads on, unwaited for
                log.error("model %r: unload did not return within %gs", self.name, UNLOAD_SECONDS)


def generation_offload(model: Model, executor: Executor) -> Optional[Offload]:
    """Where a generation's synchronous hooks run: on the event loop, a synchronous model's steps on hook threads
    (in place for an inline one)."""
    return model.offload or (None if model.settings.inline else offload_to(executor))


def run_on(executor: Executor, model: Model, pipeline: Coroutine[Any, Any, Any]) -> Awaitable[Any]:
    """One of the model's coroutines, run where its hooks belong: an awaiting model's on the event loop, a
    synchronous model's on a hook thread of ``executor`` (an inline model's requests aside: ``submit`` runs those)."""
    if model.awaits:
        return pipeline
    return asyncio.get_running_loop().run_in_executor(executor, run_sync, pipeline)

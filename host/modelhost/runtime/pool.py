"""Serving a model from worker processes of its own: the pool of its replicas, and their one queue.

Requests wait in one queue per model; each replica (``replica``) takes the next
batch as soon as its worker is free, so one hop to a worker carries a whole
batch. The model is ready while at least one replica's worker is up and healthy.
"""

import asyncio
import logging
import sys
from typing import Callable, Optional

from .. import event_loops, tracing
from ..errors import ModelNotReady
from ..metrics import Metrics
from ..plugins import PluginSpec
from ..predictor import PredictorSettings
from ..request import InferenceRequest
from ..sequences import StepReport
from ..settings import ServingSettings
from .batching import RequestQueue, stop_taking
from .messages import Elsewhere, LoadFailed, Ready, Serve
from .process import Exit, WorkerProcess
from .replica import Replica
from .runner import report_ready
from .streams import PieceStream, Streams

log = logging.getLogger("modelhost")


class WorkerPoolRunner:
    new_worker = WorkerProcess  # how a replica starts its worker (a test puts a fake one here)

    def __init__(self, spec: PluginSpec, options: dict, timeout: float, metrics: Metrics, in_flight: Callable[[], int],
                 predictor: Optional[PredictorSettings] = None):
        self.spec = spec
        self.name = spec.name
        # What each worker is told: the command line's settings for this model, which beat the plugin's, and the
        # transformer role's predictor.
        # The server's import path: `python -m` put the worker's current folder first on its own, where a folder
        # named as the plugin would shadow the installed package (the server has it only with --plugin). A worker
        # that needs an event loop runs on the kind the server runs on.
        self.serving = Serve(options, predictor, tracing.traced_here(), tuple(sys.path), event_loops.running())
        self.timeout = timeout
        self.metrics = metrics
        self.queue = RequestQueue(spec.name, metrics.batch_size.labels(spec.name).observe, in_flight)
        self.streams = Streams(spec.name, timeout, self.start_generation)
        self.settings = ServingSettings.resolve({}, options)  # until the first worker says what it resolved
        self.up: set[Replica] = set()
        self.queued: dict[Replica, int] = {}  # the sequences each worker's scheduler has waiting (sequences.py)
        self.tasks: list[asyncio.Task] = []
        self.metadata: dict = {}
        self.hooks: list[str] = []
        self.verbs: list[str] = []
        self.reason = "loading"
        self.loaded = False  # a worker has loaded the model
        self.elsewhere: Optional[str] = None
        self.failed: Optional[LoadFailed] = None

    @property
    def ready(self) -> bool:
        return bool(self.up)

    def require_ready(self) -> None:
        if not self.up:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    async def start(self) -> None:
        first = Replica(self, 0)
        started = await first.worker.start(self.serving)
        if isinstance(started, (LoadFailed, Elsewhere)):
            if isinstance(started, LoadFailed):
                self.reason, self.failed = started.reason, started
            else:
                self.elsewhere = started.runner
            await first.worker.stop()
            return
        if isinstance(started, Ready):
            self.settings = started.settings
            self.loaded = True
        else:  # it crashed while loading, and is restarted: a load asked for meanwhile is told why it failed
            self.reason = started.reason
        count = self.settings.replicas
        # An awaiting model's replicas run many batches at once: with batching off, each one request.
        self.queue.configure(self.settings, count, shares=not (isinstance(started, Ready) and started.awaits))
        self.streams.configure(self.settings.max_concurrency * count, self.settings.max_queue_size)
        replicas = [first, *(Replica(self, index) for index in range(1, count))]
        startups = [started, *await asyncio.gather(*(replica.worker.start(self.serving) for replica in replicas[1:]))]
        ready: Optional[Ready] = None
        for replica, replica_started in zip(replicas, startups):
            if isinstance(replica_started, Ready):
                # Up (if healthy) when start returns, before its task first runs.
                replica.healthy(replica_started, replica_started.health)
                ready = replica_started
            self.tasks.append(asyncio.create_task(replica.run(replica_started)))
        if ready:
            report_ready(self.spec, f"{count} worker process(es)", ready.hooks)

    def joined(self, replica: Replica, ready: Ready) -> None:
        self.metadata = ready.metadata
        self.hooks = ready.hooks
        self.verbs = ready.verbs
        self.up.add(replica)
        self.count_up()

    def left(self, replica: Replica) -> None:
        self.up.discard(replica)
        self.queued.pop(replica, None)
        self.count_up()

    def stepped(self, replica: Replica, report: StepReport) -> None:
        """A worker's step: into the metrics, the sequences queued summed over the replicas."""
        self.queued[replica] = report.queued
        self.metrics.stepped(self.name, report.sizes, sum(self.queued.values()))

    def unwell(self, replica: Replica, reason: str) -> None:
        self.left(replica)
        if not self.up:
            self.reason = f"not healthy: {reason}"
            self.queue.fail_all(ModelNotReady(f"model {self.name!r} is not ready: {self.reason}"))

    def lost(self, replica: Replica, cause: Exit) -> None:
        self.left(replica)
        self.metrics.replica_lost(self.name, cause.label)
        self.reason = f"its worker {cause}; restarting it"
        log.error("model %r: worker %s %s", self.name, replica.worker.label, cause)
        if not self.up:
            self.queue.fail_all(ModelNotReady(f"model {self.name!r} has no worker up: its worker {cause}"))

    def count_up(self) -> None:
        self.metrics.replicas_up.labels(self.name).set(len(self.up))

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        self.require_ready()
        if request.verb == "generate":
            return self.streams.open(request)
        return self.queue.submit(request)

    def start_generation(self, request: InferenceRequest, stream: PieceStream) -> None:
        """To the replica running the fewest generations, of those whose worker is well: one that has just died
        is up until its replica has finished with it, and a generation sent to it then would never end."""
        well = [replica for replica in self.up if replica.well.is_set()]
        if not well:
            stream.end(ModelNotReady(f"model {self.name!r} is not ready: {self.reason}"))
            return
        min(well, key=lambda replica: len(replica.streams)).streams.start(request, stream)

    async def stop(self) -> None:
        self.streams.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))
        await stop_taking(self.tasks, self.queue, self.name)
        self.reason = "stopped"

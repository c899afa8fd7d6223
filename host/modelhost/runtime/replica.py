"""One replica of a model served from worker processes: batches out to its worker, answers back.

A replica takes the next batch from its pool's queue as soon as its worker is
free, so work goes to a replica with none outstanding: one batch at a time for
a synchronous model, up to ``max_concurrency`` at once (each in a lane of its
own) for one with ``async def`` hooks, whose worker awaits them together. Its
worker dying fails the batches it holds at once (503), being stuck in a hook
past the timeout fails them with 504 and has it killed; either way the replica
starts another worker (``Backoff`` says when). A plugin that cannot load is
reported, not started again. A model with a ``healthy`` hook is probed every
``health_interval_s``; a replica that is not healthy leaves the pool's
replicas that are up, and takes no batch until it is healthy again.

How long the replica waits depends on whose doing the end was. A worker that
had answered a batch, then died (or was killed, stuck) while running one, was
ended by that batch: a poison request, which any client can send again and
again. The next worker starts after ``BASE_BACKOFF_SECONDS``, every time, so
that such requests cost the model a restart each, never a growing outage. Any
other end doubles the wait, up to ``MAX_BACKOFF_SECONDS``: a worker that died
while loading, one that died before it had answered anything (the model cannot
serve at all, and would be restarted in a loop), one that died idle. A worker
that served ``STABLE_SECONDS`` before dying starts the doubling afresh.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Callable

from ..errors import ModelNotReady, ModelTimeout
from .batching import Pending, fail, run_batches, settle_answered
from .channel import AsyncChannel
from .messages import Batch, Outcomes, Probe, ProbeResult, Ready
from .process import Crashed, Exit, Started
from .remote_streams import RemoteStreams
from .runner import Health

if TYPE_CHECKING:
    from .pool import WorkerPoolRunner

log = logging.getLogger("modelhost")

# A worker that served this long before dying was healthy: its restart starts the backoff afresh.
STABLE_SECONDS = 30.0
BASE_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 30.0


class Stuck(Exception):
    """The worker did not answer within the model's timeout."""


class Backoff:
    """How long a replica waits before starting its next worker, by the rule in the module's docstring."""

    def __init__(self):
        self.failures = 0  # ends in a row that were not a batch's doing
        self.answered = 0  # batches the worker serving now has answered
        self.running = 0  # batches it holds now
        self.poisoned = False  # it answered, then ended while running a batch: the batch's doing

    def ending(self) -> None:
        """The worker is done for: said as it ends, while the batches it was running still count."""
        self.poisoned = self.answered > 0 and self.running > 0

    def after(self, failed: bool) -> float:
        """The wait before the next worker; ``failed`` unless the last one was poisoned or served long."""
        self.failures = self.failures + 1 if failed else 0
        self.answered, self.poisoned = 0, False
        return min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2**self.failures)


class Replica:
    def __init__(self, pool: "WorkerPoolRunner", index: int):
        self.pool = pool
        self.index = index
        self.worker = pool.new_worker(pool.spec, index)
        self.health = Health(f"model {pool.name!r}: replica {index}")
        self.well = asyncio.Event()  # set while healthy: lanes take batches only then
        self.asked = 0  # messages sent to its worker that want an answer: each one's id
        self.answers: dict[int, asyncio.Future] = {}  # by id, those not answered yet
        self.ended = asyncio.get_running_loop().create_future()  # how its worker ended, once it has
        self.backoff = Backoff()
        self.streams = RemoteStreams(lambda: self.channel, lambda report: pool.stepped(self, report))

    async def run(self, started: Started) -> None:
        """Serve from the worker ``started`` describes, and from each one started after it, until cancelled."""
        try:
            while True:
                if isinstance(started, Ready):
                    began = time.monotonic()
                    self.pool.lost(self, await self.serve(started))
                    failed = not self.backoff.poisoned and time.monotonic() - began <= STABLE_SECONDS
                elif isinstance(started, Crashed):
                    failed = True
                    self.pool.reason = started.reason
                    log.error("model %r: %s", self.pool.name, started.reason)
                else:
                    self.pool.reason = started.reason
                    log.error("model %r: replica %d cannot load: %s%s", self.pool.name, self.index, started.reason,
                              started.where)
                    return
                await self.worker.stop()
                delay = self.backoff.after(failed)
                log.info("model %r: starting replica %d in %gs", self.pool.name, self.index, delay)
                await asyncio.sleep(delay)
                self.pool.metrics.restarts.labels(self.pool.name).inc()
                self.worker = self.pool.new_worker(self.pool.spec, self.index)
                started = await self.worker.start(self.pool.serving)
        finally:
            self.pool.left(self)
            await self.worker.stop()

    def healthy(self, ready: Ready, health: str) -> None:
        """Take the worker's latest word on the model's health: in the pool's replicas that are up, or out."""
        self.health.update(health)
        if not self.health.ok:
            self.well.clear()
            self.pool.unwell(self, self.health.reason)
        elif not self.ended.done():
            self.well.set()
            self.pool.joined(self, ready)

    async def serve(self, ready: Ready) -> Exit:
        """Run batches through the worker, and probe its health, until it dies or gets stuck; returns how it ended."""
        self.ended = asyncio.get_running_loop().create_future()
        self.healthy(ready, ready.health)
        at_once = ready.settings.max_concurrency if ready.awaits else 1
        tasks = [asyncio.create_task(self.listen()),
                 asyncio.create_task(run_batches(self.take, self.run_batch, at_once))]
        if ready.watched:
            tasks.append(asyncio.create_task(watch_health(self, ready)))
        try:
            return await self.ended
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def channel(self) -> AsyncChannel:
        assert self.worker.channel is not None  # it is serving: its worker said it is ready over it
        return self.worker.channel

    def end(self, cause: Exit) -> None:
        """The worker is done for: no batch is taken from now on; the first cause said is the one that ended it."""
        self.well.clear()
        if not self.ended.done():
            self.backoff.ending()
            self.ended.set_result(cause)

    async def listen(self) -> None:
        """Hand each answer to whoever asked; when the worker is gone, fail what it still owes."""
        try:
            while True:
                answer = await self.channel.receive()
                if self.streams.take(answer):
                    continue
                assert isinstance(answer, (Outcomes, ProbeResult))
                waiting = self.answers.get(answer.id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except (EOFError, ConnectionError):
            for waiting in self.answers.values():
                if not waiting.done():
                    waiting.set_exception(EOFError("the worker closed its channel"))
            cause = await self.worker.exit_cause()
            self.streams.fail_all(ModelNotReady(f"model {self.pool.name!r}: its worker {cause} during this generation"))
            self.end(cause)

    async def ask(self, question: Callable[[int], object]):
        """The worker's answer to ``question(id)``; Stuck past the timeout, EOFError (or ConnectionError) once gone."""
        self.asked += 1
        asked = self.asked
        waiting = self.answers[asked] = asyncio.get_running_loop().create_future()
        try:
            await self.channel.send(question(asked))
            await asyncio.wait({waiting}, timeout=self.pool.timeout)
            if not waiting.done():
                raise Stuck()
            return waiting.result()
        finally:
            del self.answers[asked]

    async def take(self) -> list[Pending]:
        """The next batch of the pool's queue, taken only while the worker is healthy and not done for."""
        while True:
            await self.well.wait()
            batch = await self.pool.queue.next_batch()
            if self.well.is_set():
                return batch
            self.pool.queue.put_back(batch)  # it turned unhealthy, or died, while this waited: the batch is another's

    async def run_batch(self, batch: list[Pending]) -> None:
        """Have the worker run the batch and answer its requests; a failed worker fails it and ends serving."""
        name = self.pool.name
        self.backoff.running += 1  # until its requests are answered: past the worker's end, which counts it
        try:
            outcomes = await self.ask(lambda asked: Batch(asked, [pending.request for pending in batch]))
            self.backoff.answered += 1
            settle_answered(batch, outcomes)
        except Stuck:
            self.worker.kill()
            fail(batch, ModelTimeout(f"model {name!r} did not answer within {self.pool.timeout:g}s; its "
                                     "worker is being replaced"))
            self.end(Exit("timeout", f"was stuck in a hook for more than {self.pool.timeout:g}s"))
        except (EOFError, ConnectionError):
            await asyncio.wait({self.ended})  # listen says why
        finally:  # whatever ended it, even the server stopping while it waited, its requests are answered
            self.backoff.running -= 1
            fail(batch, ModelNotReady(f"model {name!r}: its worker {self.ended.result()} during this request"
                                      if self.ended.done() else f"model {name!r} is shutting down"))


async def watch_health(replica: Replica, ready: Ready) -> None:
    """Ask the replica's worker every ``health_interval_s``; one stuck in the healthy hook is replaced."""
    while True:
        await asyncio.sleep(ready.settings.health_interval_s)
        try:
            result = await replica.ask(Probe)
        except Stuck:
            replica.worker.kill()
            replica.end(Exit("timeout", f"was stuck in its healthy hook for more than {replica.pool.timeout:g}s"))
            return
        except (EOFError, ConnectionError):
            return  # listen says why
        replica.healthy(ready, result.health)

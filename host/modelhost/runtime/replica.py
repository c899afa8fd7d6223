"""One replica of a model served from worker processes: batches out to its worker, answers back.

A replica takes the next batch from its pool's queue as soon as its worker is
free, so work goes to a replica with none outstanding: one batch at a time for
a synchronous model, up to ``max_concurrency`` at once (each in a lane of its
own) for one with ``async def`` hooks, whose worker awaits them together. Its
worker dying fails the batches it holds at once (503), being stuck in a hook
past the timeout fails them with 504 and has it killed; either way the replica
starts another worker, with growing backoff. A plugin that cannot load is
reported, not started again. A model with a ``healthy`` hook is probed every
``health_interval_s``; a replica that is not healthy leaves the pool's
replicas that are up, and takes no batch until it is healthy again.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Callable

from ..errors import ModelNotReady, ModelTimeout
from .batching import Pending, fail, run_batches, settle_answered
from .channel import AsyncChannel
from .messages import Batch, Outcomes, Probe, ProbeResult, Ready
from .process import Crashed, Exit, Started
from .runner import Health

if TYPE_CHECKING:
    from .pool import WorkerPoolRunner

log = logging.getLogger("modelhost")

# A worker that served this long before dying was healthy: its restart starts the backoff afresh.
STABLE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0


class Stuck(Exception):
    """The worker did not answer within the model's timeout."""


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

    async def run(self, started: Started) -> None:
        """Serve from the worker ``started`` describes, and from each one started after it, until cancelled."""
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                if isinstance(started, Ready):
                    began = loop.time()
                    self.pool.lost(self, await self.serve(started))
                    failures = 0 if loop.time() - began > STABLE_SECONDS else failures + 1
                elif isinstance(started, Crashed):
                    failures += 1
                    self.pool.reason = started.reason
                    log.error("model %r: %s", self.pool.name, started.reason)
                else:
                    self.pool.reason = started.reason
                    log.error("model %r: replica %d cannot load: %s%s", self.pool.name, self.index, started.reason,
                              started.where)
                    return
                await self.worker.stop()
                delay = min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures)
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
            tasks.append(asyncio.create_task(self.watch_health(ready)))
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
        """The worker is done for: no batch is taken from now on, and the first cause said is the one that
        ended it."""
        self.well.clear()
        if not self.ended.done():
            self.ended.set_result(cause)

    async def listen(self) -> None:
        """Hand each answer to whoever asked; when the worker is gone, fail what it still owes."""
        try:
            while True:
                answer = await self.channel.receive()
                assert isinstance(answer, (Outcomes, ProbeResult))
                waiting = self.answers.get(answer.id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except (EOFError, ConnectionError):
            for waiting in self.answers.values():
                if not waiting.done():
                    waiting.set_exception(EOFError("the worker closed its channel"))
            self.end(await self.worker.exit_cause())

    async def ask(self, question: Callable[[int], object]):
        """The worker's answer to ``question(id)``; Stuck when it has none within the timeout, EOFError (or
        ConnectionError) when it is gone."""
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
        try:
            outcomes = await self.ask(lambda asked: Batch(asked, [pending.request for pending in batch]))
            settle_answered(batch, outcomes)
        except Stuck:
            self.worker.kill()
            fail(batch, ModelTimeout(f"model {name!r} did not answer within {self.pool.timeout:g}s; its "
                                     "worker is being replaced"))
            self.end(Exit("timeout", f"was stuck in a hook for more than {self.pool.timeout:g}s"))
        except (EOFError, ConnectionError):
            await asyncio.wait({self.ended})  # listen says why
        finally:  # whatever ended it, even the server stopping while it waited, its requests are answered
            fail(batch, ModelNotReady(f"model {name!r}: its worker {self.ended.result()} during this request"
                                      if self.ended.done() else f"model {name!r} is shutting down"))

    async def watch_health(self, ready: Ready) -> None:
        """Ask the worker every ``health_interval_s``; one stuck in the healthy hook is replaced."""
        while True:
            await asyncio.sleep(ready.settings.health_interval_s)
            try:
                result = await self.ask(Probe)
            except Stuck:
                self.worker.kill()
                self.end(Exit("timeout", f"was stuck in its healthy hook for more than {self.pool.timeout:g}s"))
                return
            except (EOFError, ConnectionError):
                return  # listen says why
            self.healthy(ready, result.health)

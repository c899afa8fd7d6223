"""One replica of a model served from worker processes: batches out to its worker, answers back.

A replica takes the next batch from its pool's queue as soon as its worker is
free, so work goes to a replica with none outstanding. Its worker dying fails
the batch it holds at once (503), being stuck in a hook past the timeout fails
it with 504 and has it killed; either way the replica starts another worker,
with growing backoff. A plugin that cannot load is reported, not started again.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from ..errors import ModelhostError, ModelNotReady, ModelTimeout
from .batching import Pending, settle, settle_batch
from .messages import Batch, Outcomes, Ready
from .process import Crashed, Exit, Started

if TYPE_CHECKING:
    from .pool import WorkerPoolRunner

log = logging.getLogger("modelhost")

# A worker that served this long before dying was healthy: its restart starts the backoff afresh.
STABLE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0


class Replica:
    def __init__(self, pool: "WorkerPoolRunner", index: int):
        self.pool = pool
        self.index = index
        self.worker = pool.new_worker(pool.spec, index)
        self.batches_sent = 0

    async def run(self, started: Started) -> None:
        """Serve from the worker ``started`` describes, and from each one started after it, until cancelled."""
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                if isinstance(started, Ready):
                    began = loop.time()
                    self.pool.joined(self, started)
                    self.pool.lost(self, await self.serve())
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
                started = await self.worker.start(self.pool.options)
        finally:
            self.pool.left(self)
            await self.worker.stop()

    async def serve(self) -> Exit:
        """Take batches from the pool's queue until the worker dies or gets stuck; returns how it ended."""
        channel = self.worker.channel
        assert channel is not None  # the worker said it is ready over it
        replies = asyncio.ensure_future(channel.receive())
        batch: list[Pending] = []
        try:
            while True:
                next_batch = asyncio.ensure_future(self.pool.queue.next_batch())
                await asyncio.wait({next_batch, replies}, return_when=asyncio.FIRST_COMPLETED)
                if replies.done():  # idle, yet the channel spoke: the worker is gone
                    if next_batch.done():
                        self.pool.queue.put_back(next_batch.result())
                    next_batch.cancel()
                    return await self.worker.exit_cause()
                batch = next_batch.result()
                if not batch:
                    continue
                self.batches_sent += 1
                try:
                    await channel.send(Batch(self.batches_sent, [pending.request for pending in batch]))
                    await asyncio.wait({replies}, timeout=self.pool.timeout)
                    if not replies.done():
                        self.worker.kill()
                        fail(batch, ModelTimeout(f"model {self.pool.name!r} did not answer within "
                                                 f"{self.pool.timeout:g}s; its worker is being replaced"))
                        return Exit("timeout", f"was stuck in a hook for more than {self.pool.timeout:g}s")
                    reply = replies.result()
                    assert isinstance(reply, Outcomes)
                except (EOFError, ConnectionError):
                    cause = await self.worker.exit_cause()
                    fail(batch, ModelNotReady(f"model {self.pool.name!r}: its worker {cause} during this request"))
                    return cause
                for pending, spent in zip(batch, reply.timings):
                    pending.request.timings.update(spent)
                settle_batch(batch, reply.outcomes, ModelhostError)
                batch = []
                replies = asyncio.ensure_future(channel.receive())
        finally:
            if replies.done() and not replies.cancelled():
                replies.exception()  # the EOF that ended it, seen: asyncio would report it unretrieved
            replies.cancel()
            fail(batch, ModelNotReady(f"model {self.pool.name!r} is shutting down"))


def fail(batch: list[Pending], error: Exception) -> None:
    for pending in batch:
        settle(pending.outcome, error=error)

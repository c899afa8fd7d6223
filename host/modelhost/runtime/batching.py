"""Requests waiting for a model, handed out in batches.

With adaptive batching on (``max_batch_size`` above 1), a consumer that is
free takes whatever is waiting, up to ``max_batch_size`` requests, and, while
other requests are still out or arriving, or while it has fewer than the batch
before it held, waits at most ``max_batch_wait_ms`` for more: batches grow with
the load, and the model predicts them in one call. With it off, a free consumer
takes its fair share of what is waiting (never waiting for more), and the
model runs them one at a time: the requests only share the trip to the thread
or the worker process that runs them, which is what that trip costs under load.
A share leaves each idle consumer as much as it takes, so two requests that
arrive together for two idle replicas go one to each. A model with ``async
def`` hooks has one consumer that runs each batch (with batching off, each
request: no share) as a task of its own, ``max_concurrency`` at once
(``run_batches``).
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine

from .. import tracing
from ..errors import ModelBusy, ModelhostError, ModelNotReady
from ..request import InferenceRequest
from ..settings import ServingSettings
from .deadline import within
from .messages import Outcomes

@dataclass
class Pending:
    request: InferenceRequest
    outcome: asyncio.Future  # the runner's future of the request's result
    submitted: float = field(default_factory=time.perf_counter)


class RequestQueue:
    def __init__(self, name: str, observe_batch: Callable[[int], None] = lambda size: None,
                 in_flight: Callable[[], int] = lambda: 0):
        self.name = name
        self.observe_batch = observe_batch  # told how many requests each predict call gets
        # How many requests for this model the server has received, from their headers on, and not answered:
        # those still arriving (a large body) are on their way to this queue.
        self.in_flight = in_flight
        self.waiting: asyncio.Queue = asyncio.Queue()
        self.max_waiting = ServingSettings.max_queue_size
        self.max_size = 1
        self.max_wait = 0.0
        self.consumers = 1
        self.shares = True  # with batching off, a consumer takes its share of what waits, not one request
        self.idle = 0  # consumers waiting for a request
        self.outstanding = 0  # submitted and not yet answered
        # The size of the batch handed out before this one: clients answered together tend to come back
        # together, the next one's headers sometimes a moment after the first one's body.
        self.last_size = 1

    def configure(self, settings: ServingSettings, consumers: int, shares: bool = True) -> None:
        """Batching as the model's serving settings say; ``consumers`` take from this queue."""
        self.max_size = settings.max_batch_size
        self.max_wait = settings.max_batch_wait_ms / 1000
        self.max_waiting = settings.max_queue_size
        self.consumers = consumers
        self.shares = shares

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        """The future of the request's outcome, once a consumer has run it; ModelBusy at once when the queue is full."""
        # Idle consumers are about to take what is queued: only what is left for later waits.
        if self.waiting.qsize() - self.idle >= self.max_waiting:
            raise ModelBusy(f"model {self.name!r} has {self.max_waiting} requests waiting, its "
                            "max_queue_size; try again shortly")
        outcome = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait(Pending(request, outcome))
        self.outstanding += 1
        outcome.add_done_callback(self.settled)
        return outcome

    def settled(self, outcome: asyncio.Future) -> None:
        self.outstanding -= 1

    async def next_batch(self) -> list[Pending]:
        self.idle += 1
        try:
            batch = [await self.waiting.get()]
        finally:
            self.idle -= 1
        if self.max_size > 1:
            try:
                await self.gather(batch)
            except asyncio.CancelledError:  # its consumer is going: what it took waits for another
                self.put_back(batch)
                raise
        elif self.shares:
            left = self.waiting.qsize()
            share = min(-(-left // self.consumers), left // (self.idle + 1))
            batch += [self.waiting.get_nowait() for _ in range(share)]
        # A request already answered (by a timeout), or withdrawn by its client (cancelled), is not run.
        batch = [pending for pending in batch if not pending.outcome.done()]
        taken = time.perf_counter()
        for pending in batch:
            pending.request.timings["queue"] = taken - pending.submitted
            if pending.request.trace_context:
                tracing.queued(pending.request, self.name, pending.submitted, taken, len(batch))
        if batch:
            self.last_size = len(batch)
            # With batching off, a share's requests are each predicted alone.
            for size in [len(batch)] if self.max_size > 1 else [1] * len(batch):
                self.observe_batch(size)
        return batch

    async def gather(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_size:
            if self.waiting.empty():
                # Wait only while other requests are out (with another replica, say), still arriving, or
                # expected from the last batch: a lone request would sit out the whole window otherwise.
                if max(self.outstanding, self.in_flight(), self.last_size) <= len(batch):
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    batch.append(await within(remaining, self.waiting.get()))
                except asyncio.TimeoutError:
                    return
            else:
                batch.append(self.waiting.get_nowait())

    def put_back(self, batch: list[Pending]) -> None:
        for pending in batch:
            self.waiting.put_nowait(pending)

    def fail_all(self, error: Exception) -> None:
        while not self.waiting.empty():
            settle(self.waiting.get_nowait().outcome, error=error)


async def run_batches(take: Callable[[], Awaitable[list[Pending]]],
                      run: Callable[[list[Pending]], Coroutine[Any, Any, None]], at_once: int) -> None:
    """Take batches and run them until cancelled: one after another, or each as a task, ``at_once`` at a time."""
    if at_once == 1:
        while True:
            batch = await take()
            if batch:
                await run(batch)
            del batch  # not held while the next is awaited: its inputs may map a client's shared memory
    free = asyncio.Semaphore(at_once)
    running: set[asyncio.Task] = set()

    def done(task: asyncio.Task) -> None:
        running.discard(task)
        free.release()

    try:
        while True:
            await free.acquire()
            batch = await take()
            if not batch:
                free.release()
                continue
            task = asyncio.create_task(run(batch))
            del batch  # not held while the next is awaited, as above
            running.add(task)
            task.add_done_callback(done)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def settle(outcome: asyncio.Future, result=None, error=None) -> None:
    """Settle a request's outcome, unless it has been settled (or withdrawn) already."""
    if outcome.done():
        return
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(result)


def fail(batch: list[Pending], error: Exception) -> None:
    for pending in batch:
        settle(pending.outcome, error=error)


def settle_answered(batch: list[Pending], answered: Outcomes) -> None:
    """A batch answered by another process (a worker, a Ray replica): its stage timings and spans, then its
    outcomes."""
    if answered.spans:
        tracing.take(answered.spans)
    for pending, spent in zip(batch, answered.timings):
        pending.request.timings.update(spent)
    settle_batch(batch, answered.outcomes, ModelhostError)


async def stop_taking(tasks: list[asyncio.Task], queue: RequestQueue, name: str) -> None:
    """Cancel the tasks that take from a runner's queue; what still waits there gets 503."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    queue.fail_all(ModelNotReady(f"model {name!r} is shutting down"))


def settle_batch(batch: list[Pending], outcomes: list, error_type: type) -> None:
    """Each request its own outcome: a result, or an error instance answering it alone."""
    for pending, outcome in zip(batch, outcomes):
        if isinstance(outcome, error_type):
            settle(pending.outcome, error=outcome)
        else:
            settle(pending.outcome, result=outcome)

"""Requests waiting for a model, handed out in batches (adaptive batching).

A consumer that is free takes whatever is waiting, up to ``max_size`` requests,
and waits at most ``max_wait`` seconds for more when it has fewer. Batches thus
grow with the load: one request at a time when traffic is light, full batches
when it is heavy. With ``max_size`` 1 (the default) nothing waits.
"""

import asyncio
from dataclasses import dataclass

from .request import InferenceRequest

@dataclass
class Pending:
    request: InferenceRequest
    answer: asyncio.Future


class RequestQueue:
    def __init__(self):
        self.waiting: asyncio.Queue = asyncio.Queue()
        self.max_size = 1
        self.max_wait = 0.0

    def configure(self, settings: dict) -> None:
        """Batching as the model's serving settings say: ``max_batch_size`` and ``max_batch_wait_ms``."""
        self.max_size = max(1, int(settings["max_batch_size"]))
        self.max_wait = float(settings["max_batch_wait_ms"]) / 1000

    async def submit(self, request: InferenceRequest):
        answer = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait(Pending(request, answer))
        return await answer

    async def next_batch(self) -> list[Pending]:
        batch = [await self.waiting.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_size:
            if self.waiting.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.waiting.get(), remaining))
                except asyncio.TimeoutError:
                    break
            else:
                batch.append(self.waiting.get_nowait())
        # A request whose waiter has gone (a timeout answered it) is not run.
        return [pending for pending in batch if not pending.answer.done()]

    def put_back(self, batch: list[Pending]) -> None:
        for pending in batch:
            self.waiting.put_nowait(pending)

    def fail_all(self, error: Exception) -> None:
        while not self.waiting.empty():
            settle(self.waiting.get_nowait().answer, error=error)


def settle(answer: asyncio.Future, result=None, error=None) -> None:
    """Answer a request, unless it has been answered already."""
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)


def settle_batch(batch: list[Pending], outcomes: list, error_type: type) -> None:
    """Each request its own outcome: a result, or an error instance answering it alone."""
    for pending, outcome in zip(batch, outcomes):
        if isinstance(outcome, error_type):
            settle(pending.answer, error=outcome)
        else:
            settle(pending.answer, result=outcome)

"""The inference calls in flight in a serving process, by model: counted, and waited for.

A call counts from its admission (its headers, over HTTP) until it is
answered or its client leaves. Batching asks how many are in flight for a
model (those still arriving are on their way to its queue); an upgrade or an
unload waits for the calls that may hold a model's old runner; a draining
server waits for all of them, then answers those left with 503.
"""

import asyncio
import logging
from collections import Counter
from typing import Protocol

from .errors import ServerShuttingDown

log = logging.getLogger("modelhost")


class Call(Protocol):
    def expire(self) -> None:
        """Answer 503 now: the server stops and will not wait for the model any longer."""


class InFlight:
    def __init__(self):
        self.calls: dict[Call, str] = {}
        self.per_model: Counter = Counter()
        self.stopping = False

    def admit(self, call: Call, model: str) -> None:
        """Count ``call`` for ``model`` until ``release``; once the server is stopping, refuse it (503)."""
        if self.stopping:
            raise ServerShuttingDown("the server is shutting down")
        self.calls[call] = model
        self.per_model[model] += 1

    def release(self, call: Call) -> None:
        model = self.calls.pop(call, None)
        if model is not None:
            self.per_model[model] -= 1

    def count(self, model: str) -> int:
        return self.per_model[model]

    def of(self, model: str) -> list[Call]:
        return [call for call, its_model in self.calls.items() if its_model == model]

    async def until_answered(self, calls: list[Call], timeout: float) -> None:
        # Polled: only shutdown and upgrades wait, while every call would pay for a future to wait on.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(call in self.calls for call in calls) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def drain(self, timeout: float) -> None:
        """Refuse new calls and let those in flight finish; answer any left after ``timeout`` seconds with 503.

        Readiness turns false at once, so a load balancer stops sending here;
        the front ends keep listening meanwhile, so that what still comes gets
        503 rather than a refused connection.
        """
        self.stopping = True
        log.info("shutting down: waiting up to %gs for %d request(s) in flight", timeout, len(self.calls))
        await self.until_answered(list(self.calls), timeout)
        late = list(self.calls)
        for call in late:
            call.expire()
        log.info("drained: every request answered, %d of them with 503 after the graceful timeout", len(late))

"""The models this server process serves, by name, and the inference requests in flight for them."""

import asyncio
import logging
from typing import Callable

from .errors import ModelNotFound, ServerShuttingDown

log = logging.getLogger("modelhost")


class ModelRepository:
    def __init__(self, runners):
        self.runners = {runner.name: runner for runner in runners}
        self.stopping = False
        # The task serving each inference request, from its headers to its answer, and how to answer it 503.
        self.in_flight: dict[asyncio.Task, Callable[[], None]] = {}

    def names(self) -> list[str]:
        return list(self.runners)

    def get(self, name: str):
        try:
            return self.runners[name]
        except KeyError:
            raise ModelNotFound(f"model {name!r} is not served here") from None

    def get_ready(self, name: str):
        runner = self.get(name)
        runner.require_ready()
        return runner

    def all_ready(self) -> bool:
        return not self.stopping and bool(self.runners) and all(runner.ready for runner in self.runners.values())

    def is_ready(self, name: str) -> bool:
        return not self.stopping and self.get(name).ready

    def admit(self, answer_late: Callable[[], None]) -> None:
        """Count the calling request in flight until its task ends; once stopping, refuse it (503)."""
        if self.stopping:
            raise ServerShuttingDown("the server is shutting down")
        task = asyncio.current_task()
        self.in_flight[task] = answer_late
        task.add_done_callback(self.in_flight.pop)

    async def drain(self, timeout: float) -> None:
        """Refuse new requests and let those in flight finish; answer any left after ``timeout`` seconds with 503.

        Readiness turns false at once, so a load balancer stops sending here;
        the caller keeps listening meanwhile, so that what still comes gets 503
        rather than a refused connection.
        """
        self.stopping = True
        log.info("shutting down: waiting up to %gs for %d request(s) in flight", timeout, len(self.in_flight))
        if self.in_flight:
            await asyncio.wait(self.in_flight, timeout=timeout)
        late = [(task, answer_late) for task, answer_late in self.in_flight.items() if not task.done()]
        for task, answer_late in late:
            answer_late()
            task.cancel()  # it is answered: stop waiting for its body or its model
        log.info("drained: every request answered, %d of them with 503 after the graceful timeout", len(late))

    async def start(self) -> None:
        await asyncio.gather(*(runner.start() for runner in self.runners.values()))

    async def stop(self) -> None:
        for runner in self.runners.values():
            await runner.stop()

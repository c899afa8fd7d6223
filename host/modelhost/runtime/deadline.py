"""Waiting with a time limit, without losing a cancellation.

``asyncio.wait_for`` before Python 3.12 returns the result, and drops the
cancellation, when its caller is cancelled just as the awaited thing finishes
(cpython issue 86296). A replica or consumer cancelled that way runs on after
its worker or model is gone and holds up whoever waits for it to stop.
"""

import asyncio
from typing import Awaitable, Optional, TypeVar

T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or TimeoutError once ``seconds`` have passed (it is then cancelled)."""
    future = asyncio.ensure_future(awaitable)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        future.cancel()

    cancellations = cancellations_of(asyncio.current_task())
    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await future  # a cancellation of this task reaches the future, or is raised here: never lost
    except asyncio.CancelledError:
        # The task may be in the cleanup of a cancellation already (a finally block): only a new one counts.
        if expired and cancellations_of(asyncio.current_task()) == cancellations:
            raise asyncio.TimeoutError() from None
        raise
    finally:
        timer.cancel()


def cancellations_of(task: Optional[asyncio.Task]) -> int:
    """How many cancellations of the task are pending (Python 3.11+; 0 before, where none can be told apart)."""
    return task.cancelling() if task is not None and hasattr(task, "cancelling") else 0

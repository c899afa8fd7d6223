"""The event loop a serving process runs on: ``--event-loop auto|asyncio|uvloop``, as KServe's model server takes it.

``auto`` (the default, as in KServe) is uvloop when it is installed, else
asyncio's own. The server processes run their HTTP and gRPC front ends on it,
and a worker process whose model needs a loop (an ``async def`` hook, or steps)
runs on the same kind. uvloop answers more requests per core: bench/README.md,
"Event loops", has the figures.
"""

import asyncio
import importlib.util
from typing import Any, Callable, Coroutine, Optional, TypeVar

CHOICES = ("auto", "asyncio", "uvloop")
DEFAULT = "auto"

T = TypeVar("T")


def resolve(choice: str) -> str:
    """The loop ``choice`` runs on: ``asyncio`` or ``uvloop``; ValueError when uvloop is asked for and missing."""
    if choice not in CHOICES:
        raise ValueError(f"--event-loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ValueError("--event-loop uvloop: uvloop is not installed (pip install uvloop)")
    return "uvloop" if choice == "uvloop" or (choice == "auto" and installed) else "asyncio"


def loop_factory(loop: str) -> Optional[Callable[[], asyncio.AbstractEventLoop]]:
    """What makes a loop of a resolved kind; None: asyncio's default."""
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def running() -> str:
    """The kind of the running loop, which a worker process is told to run on as well."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """``asyncio.run`` on a loop of the resolved kind ``loop``."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)

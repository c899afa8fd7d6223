"""How a plugin's generator is stepped where the model runs: awaited on the event loop (an async generator),
in place (a model served inline), or on threads in bursts (a synchronous generator).

A synchronous generator's steps may compute for long, so they leave the event
loop. A trip to a thread for each piece costs as much as a small piece itself,
so a thread steps the generator for a burst (up to ``BURST_SECONDS``), each
piece left for the loop as it is made: the loop is woken only when it waits for
one. A burst stops ahead of the taker by as many pieces as take ``AHEAD_SECONDS``
to make (``MIN_AHEAD`` to ``MAX_AHEAD``), and the next begins once half of them
are taken: so a generator computes at most a few costly pieces, or a
millisecond's worth of cheap ones, that its client may never want (past
``max_tokens``, a ``stop``, or a client that leaves), and no stream keeps a
thread from the others for longer than a burst. A generator is closed on a
thread too, once no burst runs: one cannot be closed while it runs.
"""

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import ModelhostError, PluginError
from .hookcallers import Offload
from .model import Model, failure

BURST_SECONDS = 0.02
AHEAD_SECONDS = 0.001
MIN_AHEAD, MAX_AHEAD = 2, 16  # one piece is made while the last is sent; the most a worker's window holds
class End:
    """The end of a generation's pieces: what ``Source.next`` returns once the generator is done, and what a
    ``step`` gives for a sequence that has ended (``modelhost.END``)."""

    def __repr__(self) -> str:
        return "modelhost.END"


END = End()


class Stepper:
    """A model's hooks called as its generation runs: synchronous ones through ``offload`` (None: in place)."""

    def __init__(self, model: Model, offload: Optional[Offload]):
        self.model = model
        self.offload = offload

    async def call(self, hook: str, **kwargs) -> Any:
        return await self.model.call_on(hook, kwargs, self.offload)

    def failed(self, error: Exception) -> ModelhostError:
        """The error that answers the generator's own: ModelhostError as it is (the plugin's answer to its client,
        or the predictor's), another named as the plugin's, and logged."""
        return error if isinstance(error, ModelhostError) else failure(self.model.name, "generate", error)


@dataclass(frozen=True)
class Raised:
    """A step raised ``error`` (on a thread: handed to the loop to raise there)."""

    error: Exception


class Source:
    """The plugin's generator; ``next`` its next piece or ``END``, ``close`` runs its ``finally``."""

    def __init__(self, stepper: Stepper, made: Any):
        self.stepper = stepper
        if isinstance(made, (str, bytes, dict, np.ndarray)) or not (
                hasattr(made, "__anext__") or hasattr(made, "__iter__")):
            raise PluginError(f"model {stepper.model.name!r}: generate returned a {type(made).__name__}; it must "
                              "yield its pieces (a generator, or an async generator)")
        self.asynchronous = hasattr(made, "__anext__")
        self.generator = made if self.asynchronous else iter(made)
        self.bursts = Bursts(stepper.offload, self.generator) if stepper.offload and not self.asynchronous else None

    async def next(self) -> Any:
        try:
            if self.asynchronous:
                return await self.generator.__anext__()
            if self.bursts is not None:
                piece = await self.bursts.next()
            else:
                piece = next(self.generator, END)
        except StopAsyncIteration:
            return END
        except Exception as error:
            raise self.stepper.failed(error) from None
        if isinstance(piece, Raised):
            raise self.stepper.failed(piece.error)
        return piece

    async def close(self) -> None:
        """Close the generator; an exception from its ``finally`` is logged, and the answer stands."""
        try:
            if self.asynchronous:
                await self.generator.aclose()
            elif self.bursts is not None:
                await self.bursts.close()
            elif hasattr(self.generator, "close"):
                self.generator.close()
        except Exception as error:
            self.stepper.failed(error)


class Bursts:
    """A synchronous generator stepped on threads in bursts, each piece left for the event loop as it is made."""

    def __init__(self, offload: Offload, generator: Any):
        self.offload = offload
        self.generator = generator
        self.loop = asyncio.get_running_loop()
        self.ready: collections.deque = collections.deque()  # pieces made and not yet taken
        self.arrived: Optional[asyncio.Future] = None  # the taker, waiting for a piece
        self.woken = False  # a wake of the taker is on its way to the loop
        self.running: Optional[asyncio.Future] = None  # the burst on a thread
        self.done = False  # the generator has ended, raised, or is being closed
        self.made = self.taken = 0  # pieces: made counts on the thread, taken on the loop
        self.ahead = MIN_AHEAD  # pieces a burst may make ahead of the taker, by the time the last step took

    def burst(self) -> None:
        """(On a thread.) Step the generator for one burst."""
        started = time.perf_counter()
        while not self.done and self.made - self.taken < self.ahead:
            step_started = time.perf_counter()
            try:
                piece = next(self.generator, END)
            except Exception as error:  # raised on the loop, by Source.next
                piece = Raised(error)
            now = time.perf_counter()
            self.ahead = min(MAX_AHEAD, max(MIN_AHEAD, int(AHEAD_SECONDS / max(now - step_started, 1e-6))))
            self.ready.append(piece)
            self.made += 1
            if self.arrived is not None and not self.woken:  # read after the append: see next
                self.woken = True
                self.loop.call_soon_threadsafe(self.wake)
            if piece is END or isinstance(piece, Raised):
                self.done = True
            if now - started > BURST_SECONDS:
                return

    def wake(self) -> None:
        self.woken = False
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    def start(self, *ignored: Any) -> None:
        """Another burst, unless one runs, the generator is done, or half of the last one's pieces are untaken."""
        if (not self.done and self.made - self.taken <= self.ahead // 2
                and (self.running is None or self.running.done())):
            self.running = asyncio.ensure_future(self.offload(self.burst, []))
            self.running.add_done_callback(self.start)

    async def next(self) -> Any:
        self.start()
        while not self.ready:
            self.arrived = self.loop.create_future()
            if not self.ready:  # a piece made before the burst could see the taker waiting has no wake coming
                await self.arrived
        self.arrived = None
        self.taken += 1
        self.start()  # the next pieces are made while this one is sent
        return self.ready.popleft()

    async def close(self) -> None:
        self.done = True
        if self.running is not None:
            await asyncio.wait({self.running})
        if hasattr(self.generator, "close"):
            await self.offload(self.generator.close, [])

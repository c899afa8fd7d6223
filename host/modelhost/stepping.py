"""How a plugin's generator is stepped where the model runs: awaited on the event loop (an async generator),
in place (a model served inline), or on threads in bursts (a synchronous generator).

A synchronous generator's steps may compute for long, so they leave the event
loop. A trip to a thread for each piece costs as much as a small piece itself,
so a thread steps the generator for a burst (up to ``BURST_PIECES`` pieces or
``BURST_SECONDS``), handing each piece to the loop the moment it is made, for
as long as the pieces are taken: ``AHEAD`` pieces ahead of the taker, it
waits for one to be taken (``TAKEN_WAIT_SECONDS`` at most, then the burst
ends, and the next begins once one is). So a generator computes at most
``AHEAD`` pieces its client may never want (past ``max_tokens``, a ``stop``,
or a client that leaves), and no stream keeps a thread from the others for
longer than a burst. A generator is closed on a thread too, once no burst
runs: one cannot be closed while it runs.
"""

import asyncio
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import ModelhostError, PluginError
from .hookcallers import Offload
from .model import Model, failure

BURST_PIECES = 16
BURST_SECONDS = 0.02
AHEAD = 2  # pieces made and not yet taken, past which a burst waits: one is made while the last is sent
TAKEN_WAIT_SECONDS = 0.002
END = object()  # what ``Source.next`` returns once the generator is done


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
    """A synchronous generator stepped on threads in bursts, each piece handed to the event loop as it is made."""

    def __init__(self, offload: Offload, generator: Any):
        self.offload = offload
        self.generator = generator
        self.loop = asyncio.get_running_loop()
        self.ready: collections.deque = collections.deque()  # pieces made and not yet taken
        self.arrived: Optional[asyncio.Future] = None  # the taker, waiting for a piece
        self.running: Optional[asyncio.Future] = None  # the burst on a thread
        self.done = False  # the generator has ended, raised, or is being closed
        self.made = self.taken = 0  # pieces: made counts on the thread, taken on the loop
        self.took = threading.Event()  # set as a piece is taken: a burst waiting for it goes on

    def burst(self) -> None:
        """(On a thread.) Step the generator for one burst."""
        started = time.perf_counter()
        for _ in range(BURST_PIECES):
            while self.made - self.taken >= AHEAD:
                if time.perf_counter() - started > BURST_SECONDS or not self.took.wait(TAKEN_WAIT_SECONDS):
                    return
                self.took.clear()
            if self.done:
                return
            try:
                piece = next(self.generator, END)
            except Exception as error:  # raised on the loop, by Source.next
                piece = Raised(error)
            self.made += 1
            self.loop.call_soon_threadsafe(self.hand, piece)
            if piece is END or isinstance(piece, Raised) or time.perf_counter() - started > BURST_SECONDS:
                return

    def hand(self, piece: Any) -> None:
        if piece is END or isinstance(piece, Raised):
            self.done = True
        self.ready.append(piece)
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    def start(self, *ignored: Any) -> None:
        """Another burst, unless one runs, the generator is done, or it is ``AHEAD`` pieces ahead."""
        if not self.done and self.made - self.taken < AHEAD and (self.running is None or self.running.done()):
            self.running = asyncio.ensure_future(self.offload(self.burst, []))
            self.running.add_done_callback(self.start)

    async def next(self) -> Any:
        self.start()
        while not self.ready:
            self.arrived = self.loop.create_future()
            await self.arrived
        self.taken += 1
        self.took.set()
        self.start()  # the next piece is made while this one is sent
        return self.ready.popleft()

    async def close(self) -> None:
        self.done = True
        if self.running is not None:
            await asyncio.wait({self.running})
        if hasattr(self.generator, "close"):
            await self.offload(self.generator.close, [])

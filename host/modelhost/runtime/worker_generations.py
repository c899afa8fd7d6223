"""A worker's generations: each ``Generate`` run to its end, its parts sent to the server as they are yielded, at
most ``streams.WINDOW`` of them untaken by the client (``Taken`` makes room; ``Close`` stops it).

A model with an ``async def`` hook runs them as tasks on the worker's event loop
(``LoopGenerations``). A model whose hooks are all synchronous runs each on a
thread of its own (``ThreadGenerations``), which steps the generator in place
and writes each part to the channel itself: a process's threads share one
interpreter lock, and handing every piece from a thread to a loop costs more,
in lock hand-offs, than a small model's step.
"""

import asyncio
import pickle
import threading
from typing import Optional

from .. import generation, tracing
from ..errors import ModelhostError, PluginError
from ..hookcallers import run_sync
from ..model import Model
from .channel import AsyncChannel, BlockingChannel, encode
from .messages import Close, Generate, Generated, Parts, Taken
from .streams import WINDOW, Window


class LoopGenerations:
    """Generations as tasks of the worker's event loop."""

    def __init__(self, model: Model, channel: AsyncChannel):
        self.model = model
        self.channel = channel
        self.running: dict[int, tuple[asyncio.Task, Window]] = {}

    def stop(self) -> None:
        for task, _ in self.running.values():
            task.cancel()

    def take(self, message: object) -> bool:
        """Act on a message about generations; False when it is about something else."""
        if isinstance(message, Generate):
            window = Window(lambda part: self.channel.write(encoded_part(message.id, part, self.model.name)))
            self.running[message.id] = (asyncio.create_task(self.run(message, window)), window)
        elif isinstance(message, Taken):
            running = self.running.get(message.id)
            if running is not None:
                running[1].taken(message.count)
        elif isinstance(message, Close):
            running = self.running.pop(message.id, None)
            if running is not None:
                running[0].cancel()  # its generator is closed; the server has let it go
        else:
            return False
        return True

    async def run(self, message: Generate, window: Window) -> None:
        error = None
        try:
            await generation.generate(self.model, message.request, window.put)
        except ModelhostError as failed:
            error = failed
        except asyncio.CancelledError:
            return
        finally:
            self.running.pop(message.id, None)
        try:
            await self.channel.write(generated(message, error))
        except ConnectionError:  # the server has gone; the receiving loop sees it too
            pass


class Closed(Exception):
    """The server let the generation go: its client left, or a part was late."""


class ThreadWindow:
    """``Window`` for a producer on a thread: ``claim`` waits while ``WINDOW`` parts are out untaken."""

    def __init__(self) -> None:
        self.free = WINDOW
        self.closed = False
        self.changed = threading.Condition()

    def claim(self) -> None:
        """Room for one more part; raises Closed once the generation is closed."""
        with self.changed:
            while self.free <= 0 and not self.closed:
                self.changed.wait()
            if self.closed:
                raise Closed()
            self.free -= 1

    def taken(self, count: int) -> None:
        with self.changed:
            self.free += count
            self.changed.notify()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify()


class ThreadGenerations:
    """Generations each on a thread of its own, writing its parts to the channel."""

    def __init__(self, model: Model, channel: BlockingChannel):
        self.model = model
        self.channel = channel
        self.running: dict[int, ThreadWindow] = {}

    def stop(self) -> None:
        for window in list(self.running.values()):
            window.close()

    def take(self, message: object) -> bool:
        """Act on a message about generations; False when it is about something else."""
        if isinstance(message, Generate):
            self.running[message.id] = window = ThreadWindow()
            # A daemon: a step that never returns does not keep the worker from exiting.
            threading.Thread(target=self.run, args=(message, window), daemon=True,
                             name=f"generation-{message.id}").start()
        elif isinstance(message, Taken):
            running = self.running.get(message.id)
            if running is not None:
                running.taken(message.count)
        elif isinstance(message, Close):
            running = self.running.pop(message.id, None)
            if running is not None:
                running.close()  # its generator is closed once the step under way returns
        else:
            return False
        return True

    def run(self, message: Generate, window: ThreadWindow) -> None:
        async def emit(part: generation.Part) -> None:
            window.claim()
            self.channel.write(encoded_part(message.id, part, self.model.name))

        error = None
        try:
            run_sync(generation.generate(self.model, message.request, emit, offload=None))
        except ModelhostError as failed:
            error = failed
        except (Closed, OSError):  # let go, or the server has gone (the receiving thread sees it too)
            return
        finally:
            self.running.pop(message.id, None)
        try:
            self.channel.write(generated(message, error))
        except OSError:  # the server has gone; the receiving thread sees it too
            pass


def encoded_part(generation_id: int, part: object, name: str) -> list:
    try:
        return encode(Parts(generation_id, [part]))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise PluginError(f"model {name!r}: generate yielded something that cannot leave its worker: {exc}") from None


def generated(message: Generate, error: Optional[ModelhostError]) -> list:
    """The frames that end a generation: its error, if any, its timings, and its spans when it is traced."""
    spans = tracing.finished_here() if message.request.trace_context else []
    return encode(Generated(message.id, error, message.request.timings, spans))

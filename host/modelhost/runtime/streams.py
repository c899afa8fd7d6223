"""Generations as the server reads them: each one's parts as they come, a few at most waiting for its client.

Whatever runs the model (a task in this process, a worker, a Ray replica)
puts a generation's parts into its ``PieceStream``; the front end takes them
out as fast as its client reads them. At most ``WINDOW`` parts wait: the
producer is told of each part taken (``on_taken``) and pauses while the window
is full, so a slow client holds back the generator rather than the server's
memory. ``--timeout`` bounds each wait for a part; a client that leaves closes
the stream, which stops the producer.

A stream is handed to the inference call once its first part arrives, so an
error before any part (a bad request, a model that does not generate) is
answered with its own status, as any request's is. ``Streams`` admits a
runner's generations: ``at_once`` run, ``max_waiting`` more wait, the rest
get 503.
"""

import asyncio
import collections
import time
from typing import Any, Awaitable, Callable, Coroutine, Optional

from ..errors import ClientGone, ModelBusy, ModelhostError, ModelNotReady, ModelTimeout
from ..request import InferenceRequest

# Parts that may wait for the client; the producer pauses past it.
WINDOW = 16


class PieceStream:
    def __init__(self, name: str, timeout: float):
        self.name = name
        self.timeout = timeout
        loop = asyncio.get_running_loop()
        self.first = loop.create_future()  # this stream, once its first part has come; the error, if it ends first
        self.first.add_done_callback(self.withdrawn)
        self.parts: collections.deque = collections.deque()
        self.ended = False
        self.error: Optional[BaseException] = None
        self.waiter: Optional[asyncio.Future] = None  # the front end, waiting for a part
        self.on_taken: Callable[[int], None] = lambda count: None  # the producer's: its window has room again
        self.on_close: Callable[[], object] = lambda: None  # the producer's: stop, the client is gone
        # The producer's, when no part came within the timeout (the stream has ended with the error): its own
        # close, unless it says otherwise.
        self.on_stuck: Callable[[], object] = lambda: self.on_close()
        self.on_end: Callable[[], None] = lambda: None  # its runner's: a running generation's place is free
        self.timer: Optional[asyncio.TimerHandle] = None
        self.taken_at: list[float] = []  # when each part was taken, for the metrics

    # The producer's side.

    def started(self) -> None:
        """The generation runs: its first part is due within the timeout."""
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self.time_out)

    def put(self, part: Any) -> None:
        if self.ended:
            return
        self.parts.append(part)
        if not self.first.done():
            self.cancel_timer()
            self.first.set_result(self)
        self.wake()

    def end(self, error: Optional[BaseException] = None) -> None:
        """No more parts: the generation is done, or ``error`` ends it."""
        if self.ended:
            return
        self.ended, self.error = True, error
        self.cancel_timer()
        self.on_end()
        if not self.first.done():
            if error is not None:
                self.first.set_exception(error)
            else:
                self.first.set_result(self)
        self.wake()

    # The front end's side.

    async def next(self) -> Optional[Any]:
        """The next part; None once the generation is done; its error, or ModelTimeout, if it ends in one."""
        while not self.parts:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return None
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            late = loop.call_later(self.timeout, self.time_out)  # which ends the stream, and so wakes this
            try:
                await self.waiter
            finally:
                late.cancel()
                self.waiter = None
        self.taken_at.append(time.perf_counter())
        part = self.parts.popleft()
        self.on_taken(1)
        return part

    def close(self, error: Optional[ModelhostError] = None) -> None:
        """The front end is done with it before its end: the client left, or ``error`` (the server stops it)."""
        if not self.ended:
            self.end(error or ClientGone("the client left during the generation"))
            self.on_close()

    # Both.

    def time_out(self) -> None:
        if self.ended:
            return
        self.end(ModelTimeout(f"model {self.name!r} did not yield its next piece within {self.timeout:g}s"))
        self.on_stuck()

    def withdrawn(self, first: asyncio.Future) -> None:
        if first.cancelled():  # the client left before the first part
            self.close()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Streams:
    """A runner's generations: ``at_once`` run together, ``max_waiting`` more wait for one to end, more get 503.

    ``start`` begins a generation admitted to run, whose parts it puts into the stream.
    """

    def __init__(self, name: str, timeout: float, start: Callable[[InferenceRequest, PieceStream], None]):
        self.name = name
        self.timeout = timeout
        self.start = start
        self.at_once = 1
        self.max_waiting = 0
        self.running = 0
        self.waiting: collections.deque = collections.deque()

    def configure(self, at_once: int, max_waiting: int) -> None:
        self.at_once, self.max_waiting = at_once, max_waiting

    def open(self, request: InferenceRequest) -> asyncio.Future:
        """The future of the request's stream: done at its first part (``PieceStream.first``)."""
        if self.running >= self.at_once and len(self.waiting) >= self.max_waiting:
            raise ModelBusy(f"model {self.name!r} has {self.max_waiting} generations waiting, its max_queue_size; "
                            "try again shortly")
        stream = PieceStream(self.name, self.timeout)
        if self.running < self.at_once:
            self.run(request, stream)
        else:
            self.waiting.append((request, stream))
        return stream.first

    def run(self, request: InferenceRequest, stream: PieceStream) -> None:
        self.running += 1
        stream.on_end = self.ended  # however it ends, its place goes to the next
        stream.started()
        self.start(request, stream)

    def ended(self) -> None:
        self.running -= 1
        while self.waiting and self.running < self.at_once:
            request, stream = self.waiting.popleft()
            if not stream.ended:  # its client left while it waited
                self.run(request, stream)

    def fail_all(self, error: ModelhostError) -> None:
        """Those waiting get ``error``; those running are their producers' to end."""
        while self.waiting:
            self.waiting.popleft()[1].end(error)


class Window:
    """A producer's side of the window: ``put`` sends a part, and waits first while ``WINDOW`` parts are out
    untaken; ``taken`` is told of the parts the front end took (in this process, or over a worker's channel)."""

    def __init__(self, send: Callable[[Any], Optional[Awaitable[None]]]):
        self.send = send
        self.free = WINDOW
        self.room: Optional[asyncio.Future] = None

    async def put(self, part: Any) -> None:
        while self.free <= 0:
            self.room = asyncio.get_running_loop().create_future()
            await self.room
        self.free -= 1
        sent = self.send(part)
        if sent is not None:  # a channel's write: its bytes are on their way
            await sent

    def taken(self, count: int) -> None:
        self.free += count
        if self.room is not None and not self.room.done():
            self.room.set_result(None)


# Produces a generation's parts, each through the function it is given; raises the ModelhostError that ends it.
Produce = Callable[[Callable[[Any], Awaitable[None]]], Coroutine[Any, Any, None]]


class Producers:
    """Generations produced by tasks of this process (the model's, or ones reading a Ray replica's), each into its
    stream through a ``Window``: a stream closed by its client cancels its task, and ``stop`` cancels them all."""

    def __init__(self, name: str):
        self.name = name
        self.tasks: set[asyncio.Task] = set()

    def start(self, stream: PieceStream, produce: Produce) -> None:
        window = Window(stream.put)
        stream.on_taken = window.taken
        task = asyncio.create_task(self.run(stream, produce(window.put)))
        stream.on_close = task.cancel
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, stream: PieceStream, producing: Coroutine[Any, Any, None]) -> None:
        try:
            await producing
        except ModelhostError as error:
            stream.end(error)
        except asyncio.CancelledError:
            stream.end(ModelNotReady(f"model {self.name!r} is shutting down"))  # unless its client ended it first
            raise
        else:
            stream.end()

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

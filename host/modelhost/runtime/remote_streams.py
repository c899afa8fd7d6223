"""Generations that run in another process (a worker), as its replica follows them: parts in, taken counts out.

The replica sends ``Generate`` and hands each ``Parts`` and ``Generated`` that
comes back to the generation's ``PieceStream``, and a ``StepReport`` (a model
that steps) to the metrics. What the client takes is told
to the worker every ``TAKEN_EVERY`` parts, which the worker needs to go on
past its window; a client that leaves, or a part that is late, sends
``Close``: the worker closes the generator once the step under way returns.
A worker that dies ends its generations with that error.
"""

import itertools
from typing import Callable

from .. import tracing
from ..errors import ModelhostError
from ..request import InferenceRequest
from ..sequences import StepReport
from .channel import AsyncChannel
from .messages import Close, Generate, Generated, Parts, Taken
from .streams import WINDOW, PieceStream

TAKEN_EVERY = WINDOW // 2  # each wakes the worker: told every half window, it stays half a window ahead at least


class RemoteStreams:
    def __init__(self, channel: Callable[[], AsyncChannel], on_step: Callable[[StepReport], None]):
        self.channel = channel  # the worker's channel now
        self.on_step = on_step  # a step of a model that steps (sequences.py), as the worker reports it
        self.running: dict[int, tuple[InferenceRequest, PieceStream]] = {}
        self.ids = itertools.count(1)  # the generations' own: their messages never answer a batch's

    def __len__(self) -> int:
        return len(self.running)

    def start(self, request: InferenceRequest, stream: PieceStream) -> None:
        """Send the generation to the worker. Unlike a batch's, a late part leaves the worker up: its other
        generations go on, on its other threads."""
        asked = next(self.ids)
        self.running[asked] = (request, stream)
        untold = [0]

        def taken(count: int) -> None:
            untold[0] += count
            if untold[0] >= TAKEN_EVERY and asked in self.running:
                self.channel().post(Taken(asked, untold[0]))
                untold[0] = 0

        def closed() -> None:
            if self.running.pop(asked, None) is not None:
                self.channel().post(Close(asked))

        stream.on_taken, stream.on_close, stream.on_stuck = taken, closed, closed
        self.channel().post(Generate(asked, request))

    def take(self, message: object) -> bool:
        """Hand a worker's message to its generation; False when it is no generation's."""
        if isinstance(message, Parts):
            running = self.running.get(message.id)
            if running is not None:
                for part in message.parts:
                    running[1].put(part)
            return True
        if isinstance(message, StepReport):
            self.on_step(message)
            return True
        if isinstance(message, Generated):
            running = self.running.pop(message.id, None)
            if running is not None:
                request, stream = running
                if message.spans:
                    tracing.take(message.spans)
                request.timings.update(message.timings)
                stream.end(message.error)
            return True
        return False

    def fail_all(self, error: ModelhostError) -> None:
        running, self.running = self.running, {}
        for _, stream in running.values():
            stream.end(error)

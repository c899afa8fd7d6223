"""Continuous batching: the sequences of a model with ``begin`` and ``step`` hooks are stepped together.

Where the model runs (the server process, a worker, a Ray replica) its
``Scheduler`` iterates while any sequence is waiting or active. Each iteration
first ends the sequences that have left (``end``). Then either it begins the
ones admitted since the last (``begin``, one at a time: a language model's
prefill) and steps them alone, so that a new request's first piece waits only
for the step under way, its own begin and one step of its own; or it advances
every active sequence by one ``step``, in one call. The two alternate at most,
so a stream of arrivals never starves the sequences under way of steps. A
sequence that finishes, fails or whose client leaves is out before the next
step.

Admission, in order of arrival: as many sequences active as fit their
``sequence_memory`` in ``memory_budget`` when the plugin declares one (else as
many as run at once, ``max_concurrency``); the rest queue. A step takes at most
``max_batch_size`` of them, those stepped least recently first, so that a
step's length (which a new request may wait for) is the plugin's to choose
apart from how many sequences it holds. A sequence whose reader is ``AHEAD`` pieces behind (a slow
client: its window is full) sits out steps until it reads again, so that no
piece waits in memory unbounded and the others go on. A synchronous model's
iteration runs on a hook thread, whole, one trip per step; a short step of one
sequence runs in place, on the event loop (``IN_PLACE_SECONDS``).

A ``Sequence`` reads as a generator does (``next``, ``close``), so that
``generation`` treats both alike: the host's ``max_tokens``, ``stop``,
``postprocess`` and windows apply the same.
"""

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import ModelhostError, PluginError
from .hookcallers import Offload, run_sync
from .model import Model, failure
from .request import InferenceRequest
from .stepping import END, Raised

log = logging.getLogger("modelhost")

AHEAD = 2  # pieces a sequence's reader may leave unread before it sits out steps
IN_PLACE_SECONDS = 0.005  # the longest step of one sequence run in place, on the event loop
REPORT_SECONDS = 0.1  # how long a worker gathers its steps' reports for the server's metrics


@dataclass(frozen=True)
class StepReport:
    """Steps: how many sequences each advanced, and how many waited for admission after the last."""

    sizes: tuple[int, ...]
    queued: int


class GatheredReports:
    """A worker's StepReports, sent to the server together at most every ``REPORT_SECONDS``: a message a step
    would cost a step of one sequence a message more than its piece."""

    def __init__(self, send: Callable[[StepReport], None]):
        self.send = send
        self.sizes: list[int] = []
        self.queued = 0

    def add(self, report: StepReport) -> None:
        if not self.sizes:
            asyncio.get_running_loop().call_later(REPORT_SECONDS, self.flush)
        self.sizes += report.sizes
        self.queued = report.queued

    def flush(self) -> None:
        self.send(StepReport(tuple(self.sizes), self.queued))
        self.sizes = []


class Sequence:
    """One request's sequence, as its generation reads it: each piece as a step makes it."""

    def __init__(self, scheduler: "Scheduler", inputs: Any, request: InferenceRequest):
        self.scheduler = scheduler
        self.inputs = inputs
        self.request = request
        self.state: Any = None  # what begin returned
        self.begun = False
        self.out = False  # ended, failed or left: in no further step
        self.stepped_at = 0  # the scheduler's iteration that last stepped it
        self.pieces: collections.deque = collections.deque()
        self.waiter: Optional[asyncio.Future] = None

    async def next(self) -> Any:
        while not self.pieces:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        piece = self.pieces.popleft()
        if isinstance(piece, Raised):
            raise piece.error
        self.scheduler.moved.set()  # it may step again
        return piece

    async def close(self) -> None:
        self.scheduler.leave(self)

    def hand(self, piece: Any) -> None:
        if piece is END or isinstance(piece, Raised):
            self.out = True
        self.pieces.append(piece)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Scheduler:
    def __init__(self, model: Model, offload: Optional[Offload], report: Callable[[StepReport], None]):
        self.model = model
        self.offload = offload  # None: the iteration runs on the event loop, as an inline model's hooks do
        self.report = report
        # A short step of one sequence on the event loop, in place: a thread would cost each of its pieces an
        # interpreter-lock hand-off (the served sample at one stream, in the server process: 0.50x its plain
        # loop through a thread, 0.72-0.86x in place), and it holds the loop no longer than a hook thread holding
        # the interpreter lock would (its switch interval is 5 ms too). A long one goes to the thread, so that a
        # request arriving meanwhile (a few turns of the loop from its bytes to joining) waits for no more than the
        # step under way.
        self.alone_took = 0.0  # seconds the last step of one sequence took
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []
        self.leaving: list[Sequence] = []  # begun, out, their end not yet run
        self.moved = asyncio.Event()  # a sequence joined, left or read: an idle iteration may go on
        self.task: Optional[asyncio.Task] = None
        self.joined = False  # the last iteration began sequences
        self.steps = 0  # iterations so far: each sequence's stepped_at is one

    def join(self, inputs: Any, request: InferenceRequest) -> Sequence:
        sequence = Sequence(self, inputs, request)
        self.waiting.append(sequence)
        self.moved.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run())
        return sequence

    def leave(self, sequence: Sequence) -> None:
        """The sequence's generation is done with it: it leaves now, and its end runs before the next step."""
        sequence.out = True
        if sequence in self.waiting:
            self.waiting.remove(sequence)
        self.moved.set()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        try:
            while self.waiting or self.active or self.leaving:
                await self.iterate()
                # An iteration in place never waits: the loop's turn, for the pieces to leave and requests to join.
                await asyncio.sleep(0)
        except Exception as error:  # the host's own fault: no sequence may be left waiting on it
            log.exception("model %r: the step scheduler failed", self.model.name)
            for sequence in [*self.waiting, *self.active]:
                sequence.hand(Raised(PluginError(f"model {self.model.name!r}: the step scheduler failed: {error}")))
            self.waiting.clear()
            self.active.clear()

    async def iterate(self) -> None:
        self.sort()
        # Sequences admitted now begin and take their first step alone, so that their first piece waits for no
        # step of the others; the next iteration steps them all. Every other one at most: the others never starve.
        ready = [sequence for sequence in self.active if len(sequence.pieces) < AHEAD]
        admitted = self.admit() if not (self.joined and ready) else []
        self.joined = bool(admitted)
        most = self.model.settings.max_batch_size
        stepped = admitted or sorted(ready, key=lambda sequence: sequence.stepped_at)[:most]
        self.steps += 1
        for sequence in stepped:
            sequence.stepped_at = self.steps
        if not (stepped or self.leaving):  # every reader is behind, or the budget is spent
            self.moved.clear()
            await self.moved.wait()
            return
        leaving, self.leaving = self.leaving, []
        iteration = self.iteration(admitted, stepped, leaving)
        if self.offload is not None and not self.model.awaits and not (
                len(stepped) == 1 and self.alone_took < IN_PLACE_SECONDS):
            outcomes, size = await self.offload(run_sync, [iteration])
        else:
            outcomes, size = await iteration
        for sequence, outcome in outcomes:
            if not sequence.out and outcome is not None:
                sequence.hand(outcome)
        if size:
            self.report(StepReport((size,), len(self.waiting)))

    def sort(self) -> None:
        """Sequences that are out leave the active ones; those begun have their end to run."""
        for sequence in self.active:
            if sequence.out and sequence.begun:
                self.leaving.append(sequence)
        self.active = [sequence for sequence in self.active if not sequence.out]

    def admit(self) -> list[Sequence]:
        """Those waiting that fit, in order of arrival: at most a step's worth."""
        settings = self.model.settings
        admitted: list[Sequence] = []
        while self.waiting and len(admitted) < settings.max_batch_size and (
                not settings.memory_budget
                or (len(self.active) + 1) * settings.sequence_memory <= settings.memory_budget):
            sequence = self.waiting.popleft()
            self.active.append(sequence)
            admitted.append(sequence)
        return admitted

    async def iteration(self, admitted: list[Sequence], stepped: list[Sequence],
                        leaving: list[Sequence]) -> tuple[list[tuple[Sequence, Any]], int]:
        """End, begin and step (on a hook thread, or the event loop): each sequence's outcome, a piece, END,
        ``Raised`` or None (nothing this step), for the loop to hand on; and how many sequences the step took."""
        offload = self.offload if self.model.awaits else None  # else this runs where the hooks belong already
        for sequence in leaving if "end" in self.model.hooks else ():
            try:
                await self.model.call_on("end", {"state": sequence.state}, offload)
            except ModelhostError:  # logged; the sequence has had its answer
                pass
        outcomes: list[tuple[Sequence, Any]] = []
        for sequence in admitted:
            try:
                sequence.state = await self.model.call_on(
                    "begin", {"inputs": sequence.inputs, "request": sequence.request}, offload)
                sequence.begun = True
            except ModelhostError as error:
                outcomes.append((sequence, Raised(error)))
        stepping = [sequence for sequence in stepped if sequence.begun and not sequence.out]
        if not stepping:
            return outcomes, 0
        started = time.perf_counter()
        try:
            pieces = await self.model.call_on("step", {"states": [sequence.state for sequence in stepping]}, offload)
            if len(stepping) == 1:  # the step alone, wherever it ran: a hand-off to a thread is not its cost
                self.alone_took = time.perf_counter() - started
            if not isinstance(pieces, (list, tuple)) or len(pieces) != len(stepping):
                raise PluginError(f"model {self.model.name!r}: step returned {describe(pieces)} for "
                                  f"{len(stepping)} sequences; it must return a list with one entry for each")
        except ModelhostError as error:
            return outcomes + [(sequence, Raised(error)) for sequence in stepping], len(stepping)
        for sequence, piece in zip(stepping, pieces):
            if isinstance(piece, Exception):  # this sequence's own failure: the others go on
                piece = Raised(piece if isinstance(piece, ModelhostError) else failure(self.model.name, "step", piece))
            outcomes.append((sequence, piece))
        return outcomes, len(stepping)


def describe(value: Any) -> str:
    return f"{len(value)} entries" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"


def ignore(report: StepReport) -> None:
    """Where no metrics are kept (a Ray replica's steps)."""


def detach(model: Optional[Model]) -> None:
    """Stop the scheduler of a model that steps, as its runner stops serving it."""
    if model is not None and model.scheduler is not None:
        model.scheduler.stop()


def attach(model: Model, offload: Optional[Offload], report: Callable[[StepReport], None] = ignore) -> None:
    """Give a model that steps its scheduler, in the process and on the event loop that serve it."""
    if "step" in model.hooks:
        model.scheduler = Scheduler(model, offload, report)

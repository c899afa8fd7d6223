"""What the server and a worker process say to each other over their channel, in the order they say it.

The server sends ``Serve`` once; the worker loads the model and answers ``Ready``,
or ``LoadFailed`` or ``Elsewhere`` (and exits). Then each ``Batch`` gets its ``Outcomes`` and each
``Probe`` its ``ProbeResult``, answering the same ``id``, until the server closes
the channel. A synchronous model answers in the order asked; an awaiting one
(``Ready.awaits``) runs several at once and answers each when it is done.

A ``Generate`` is answered with ``Parts`` as they are yielded, then ``Generated``;
the server says how many parts its client has taken (``Taken``: the worker has
at most ``streams.WINDOW`` out untaken), or that it is done with them (``Close``:
the generator is closed, and nothing more is said of it).
"""

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..predictor import PredictorSettings
from ..request import InferenceRequest
from ..settings import ServingSettings


@dataclass(frozen=True)
class Serve:
    """Server to worker, first: the command line's settings for the model, which beat the plugin's own, the
    predictor it sends its inputs to in the transformer role, whether the server traces (``tracing``), the
    server's import path, which the worker imports the plugin from (``search_path``; empty: its own), and the kind
    of event loop the server runs on."""

    command_line: dict
    predictor: Optional[PredictorSettings] = None
    tracing: bool = False
    search_path: tuple[str, ...] = ()
    event_loop: str = "asyncio"  # what a worker whose model needs an event loop runs on (event_loops)


@dataclass(frozen=True)
class Ready:
    """Worker to server: loaded, with the settings it resolved, the plugin's metadata, the hooks it implements
    and what the model answers (``Model.verbs``), whether any hook is ``async def``, its first health (why it is
    not healthy; "" when it is), and whether that can change (``Model.watched``)."""

    settings: ServingSettings
    metadata: dict
    hooks: list[str]
    verbs: list[str]
    awaits: bool = False
    health: str = ""
    watched: bool = False


@dataclass(frozen=True)
class LoadFailed:
    """Worker to server: the model cannot be served; ``reason`` for anyone, ``where`` (file and line) for the log."""

    reason: str
    where: str


@dataclass(frozen=True)
class Elsewhere:
    """Worker to server: the plugin's settings ask for another runner (``runner``); nothing was loaded."""

    runner: str
    where: ClassVar[str] = ""

    @property
    def reason(self) -> str:
        return f"its settings ask for runner {self.runner!r}"


@dataclass(frozen=True)
class Batch:
    """Server to worker: requests to run through the model together."""

    id: int
    requests: list[InferenceRequest]


@dataclass(frozen=True)
class Outcomes:
    """Worker to server: each request's outcome (a result, or the error that answers it), stage timings, and
    the spans the worker finished when the server traces (``tracing.shipping.ShippedSpan``)."""

    id: int
    outcomes: list
    timings: list[dict]
    spans: list = field(default_factory=list)


@dataclass(frozen=True)
class Probe:
    """Server to worker: is the model healthy (its ``healthy`` hook)?"""

    id: int


@dataclass(frozen=True)
class ProbeResult:
    """Worker to server: why the model is not healthy; "" when it is."""

    id: int
    health: str


@dataclass(frozen=True)
class Generate:
    """Server to worker: run a generation (``generation.generate``)."""

    id: int
    request: InferenceRequest


@dataclass(frozen=True)
class Parts:
    """Worker to server: parts of generation ``id``, as they were yielded."""

    id: int
    parts: list


@dataclass(frozen=True)
class Generated:
    """Worker to server: generation ``id`` has ended, with ``error`` or without; its stage timings and spans."""

    id: int
    error: Optional[Exception]
    timings: dict
    spans: list = field(default_factory=list)


@dataclass(frozen=True)
class Taken:
    """Server to worker: the client has taken ``count`` more parts of generation ``id``."""

    id: int
    count: int


@dataclass(frozen=True)
class Close:
    """Server to worker: the client is gone, or the part is late; close generation ``id``."""

    id: int

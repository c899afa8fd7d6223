"""What the server and a worker process say to each other over their channel, in the order they say it.

The server sends ``Serve`` once; the worker loads the model and answers ``Ready``
or ``LoadFailed`` (and exits). Then each ``Batch`` gets its ``Outcomes``, until the
server closes the channel.
"""

from dataclasses import dataclass

from ..request import InferenceRequest
from ..settings import ServingSettings


@dataclass(frozen=True)
class Serve:
    """Server to worker, first: the command line's settings for the model, which beat the plugin's own."""

    command_line: dict


@dataclass(frozen=True)
class Ready:
    """Worker to server: loaded, with the settings it resolved, the plugin's metadata and the hooks it implements."""

    settings: ServingSettings
    metadata: dict
    hooks: list[str]


@dataclass(frozen=True)
class LoadFailed:
    """Worker to server: the model cannot be served; ``reason`` for anyone, ``where`` (file and line) for the log."""

    reason: str
    where: str


@dataclass(frozen=True)
class Batch:
    """Server to worker: requests to run through the model together."""

    id: int
    requests: list[InferenceRequest]


@dataclass(frozen=True)
class Outcomes:
    """Worker to server: each request's outcome (a result, or the error that answers it) and stage timings."""

    batch_id: int
    outcomes: list
    timings: list[dict]

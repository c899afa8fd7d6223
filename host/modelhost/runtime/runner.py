"""The runner interface: where a model's hooks run, as the repository and the inference call see it.

A runner loads its model, says whether it is ready and runs requests through
it without ever blocking the event loop: ``submit`` returns the future of a
request's outcome (already done when the model answered at once). The
in-process runner (``inprocess``) and the worker pool (``pool``) implement it;
another runner is one more module that does.
"""

import asyncio
import logging
from typing import Optional, Protocol

from ..plugins import PluginSpec
from ..request import InferenceRequest
from ..settings import ServingSettings
from .messages import LoadFailed

log = logging.getLogger("modelhost")


class Runner(Protocol):
    spec: PluginSpec
    reason: str  # why it is not ready, while it is not
    # Once started: the runner the plugin's own settings ask for, when the command line named none and it is
    # not this one; nothing was loaded then, and the repository starts that runner instead.
    elsewhere: Optional[str]
    # Once started: why and where its model could not load, when it could not. Not logged here: whoever started it
    # knows whether that leaves the model not ready, or an upgrade failed and the runner before it serves on.
    failed: Optional[LoadFailed]

    @property
    def ready(self) -> bool:
        """Whether it takes requests now: loaded, and healthy."""

    @property
    def loaded(self) -> bool:
        """Whether its model loaded, healthy or not: a server serves on while one has."""

    @property
    def settings(self) -> ServingSettings:
        """How the model is served (the defaults until it is loaded)."""

    @property
    def metadata(self) -> dict:
        """What the plugin's ``metadata`` hook declared ({} until it is loaded)."""

    @property
    def hooks(self) -> list[str]:
        """The hooks the plugin implements ([] until it is loaded)."""

    @property
    def verbs(self) -> list[str]:
        """What the model answers (``Model.verbs``; [] until it is loaded)."""

    async def start(self) -> None:
        """Load the model; a model that cannot load leaves the runner not ready, with the reason."""

    def require_ready(self) -> None:
        """Raise ModelNotReady, with the reason, unless ready."""

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        """The future of the request's outcome: its result, or the error that answers it."""

    async def stop(self) -> None:
        """Stop taking requests; those still waiting get 503."""


def report_ready(spec: PluginSpec, where: str, hooks: list[str]) -> None:
    log.info("model %r is ready in %s (%s, hooks: %s)", spec.name, where, spec.distribution or spec.target, ", ".join(hooks))


class Health:
    """A model's own health, as its ``healthy`` hook last answered in one process; each change logged once."""

    def __init__(self, who: str):
        self.who = who  # "model 'name'", and which replica
        self.reason = ""  # why it is not healthy, while it is not

    @property
    def ok(self) -> bool:
        return not self.reason

    def update(self, reason: str) -> bool:
        """Take the latest answer; whether health changed."""
        if reason == self.reason:
            return False
        if reason:
            log.warning("%s is not healthy: %s", self.who, reason)
        else:
            log.info("%s is healthy again", self.who)
        self.reason = reason
        return True

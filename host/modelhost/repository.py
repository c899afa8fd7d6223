"""The models this server process serves, by name: loaded, upgraded and unloaded while it runs.

The Open Inference Protocol's model repository extension changes what is
served. A request is routed by name when it arrives, so replacing a runner in
``runners`` is what moves the traffic; the runner it replaced is stopped once
the requests that may hold it (``inflight``) are answered.
"""

import asyncio
import logging
from typing import Callable, Optional

from .errors import InvalidInput, ModelhostError, ModelNotFound, ServerShuttingDown, quoted
from .inflight import InFlight
from .model import served_versions
from .plugins import PluginSpec, discover
from .protocol.v2 import LOADING, READY, UNAVAILABLE, UNLOADING
from .runtime.runner import Runner

log = logging.getLogger("modelhost")



class ModelLoadFailed(ModelhostError):
    """A load request for a model that cannot serve; what was served before still is (400, as the extension says).

    ``where`` is the file and line its load failed at, for the log."""

    status = 400

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.where = where


# (spec, how many of its model's requests are in flight, the runner its settings name) -> a runner, not started
MakeRunner = Callable[[PluginSpec, Callable[[], int], Optional[str]], Runner]


class Installed:
    """The plugins a load can serve: the installed entry points as they are now, and the import paths served."""

    def __init__(self, specs: list[PluginSpec]):
        # Plugins served by import path (--plugin) have no entry point to find again: a load reuses their spec.
        self.import_paths = {spec.name: spec for spec in specs if spec.distribution is None}

    async def all(self) -> dict[str, PluginSpec]:
        # Reading every installed distribution's metadata is file-system work: off the event loop.
        installed = await asyncio.to_thread(discover)
        return {**{spec.name: spec for spec in installed}, **self.import_paths}

    async def find(self, name: str) -> PluginSpec:
        spec = (await self.all()).get(name)
        if spec is None:
            raise ModelNotFound(f"no model named {quoted(name)} is installed")
        return spec


class ModelRepository:
    def __init__(self, specs: list[PluginSpec], make_runner: MakeRunner, in_flight: InFlight, drain_timeout: float,
                 changeable: bool, others_loaded: Callable[[], bool] = lambda: True):
        """``make_runner`` builds the command line's runner, or the one a plugin's settings name. ``drain_timeout``
        bounds the wait for a retired runner's requests. With ``--workers N`` a request reaches one process,
        which would change alone: not ``changeable``; and the server is ready only when ``others_loaded()``,
        since a probe reaches one process for all."""
        self.others_loaded = others_loaded
        self.make_runner = make_runner
        self.in_flight = in_flight
        self.drain_timeout = drain_timeout
        self.changeable = changeable
        self.runners: dict[str, Runner] = {spec.name: self.new_runner(spec) for spec in specs}
        self.installed = Installed(specs)
        self.not_served: dict[str, dict] = {}  # index entries of the known not served (loading, unloaded, failed)
        # One load or unload at a time per model; only names known to exist get one, so none can be made up.
        self.changing: dict[str, asyncio.Lock] = {}

    def new_runner(self, spec: PluginSpec, runner: Optional[str] = None) -> Runner:
        return self.make_runner(spec, lambda: self.in_flight.count(spec.name), runner)

    async def started(self, runner: Runner, replacing: bool = False) -> Runner:
        """The runner, started; or the one the plugin's own settings ask for, started in its place.

        A model that cannot load is logged not ready, unless the runner was to replace one, which serves on.
        """
        await runner.start()
        if runner.elsewhere is not None:
            log.info("model %r: its settings ask for runner %r", runner.spec.name, runner.elsewhere)
            runner = self.new_runner(runner.spec, runner.elsewhere)
            await runner.start()
        if runner.failed and not replacing:
            log.error("model %r is not ready: %s%s", runner.spec.name, runner.failed.reason, runner.failed.where)
        return runner

    def names(self) -> list[str]:
        return list(self.runners)

    def get(self, name: str, version: Optional[str] = None) -> Runner:
        """The runner serving ``name``, and ``version`` of it when one is named; else ModelNotFound."""
        try:
            runner = self.runners[name]
        except KeyError:
            # Triton's words first: its clients and scripts match on them.
            raise ModelNotFound(f"Request for unknown model: {quoted(name)} is not served here") from None
        check_version(runner, name, version)
        return runner

    def get_ready(self, name: str, version: Optional[str] = None) -> Runner:
        runner = self.get(name, version)
        runner.require_ready()
        return runner

    def all_ready(self) -> bool:
        return (not self.in_flight.stopping and bool(self.runners) and all(r.ready for r in self.runners.values())
                and self.others_loaded())

    def is_ready(self, name: str, version: Optional[str] = None) -> bool:
        return not self.in_flight.stopping and self.get(name, version).ready

    async def index(self, ready_only: bool = False) -> list[dict]:
        """Every model known here, served or not, as the repository extension's index lists them."""
        entries = {name: entry(spec, UNAVAILABLE, "not loaded") for name, spec in (await self.installed.all()).items()}
        entries.update(self.not_served)
        for name, runner in self.runners.items():
            state, reason = (READY, "") if runner.ready else (UNAVAILABLE, runner.reason)
            entries[name] = entry(runner.spec, state, reason, served_versions(runner.spec, runner.metadata))
        return [entries[name] for name in sorted(entries) if not ready_only or entries[name]["state"] == READY]

    async def load(self, name: str) -> None:
        """Serve ``name``, or if it is served, upgrade it to the version installed now; returns once it serves.

        An upgrade starts the new runner beside the old and switches only once it is ready, so no request
        is refused; if the new one cannot load, the old one serves on and the caller gets ModelLoadFailed.
        """
        spec = await self.installed.find(name)
        async with self.change(name):
            old = self.runners.get(name)
            if old is None:
                self.not_served[name] = entry(spec, LOADING)
            try:
                runner = await self.start_runner(spec, replacing=old is not None)
            except Exception as failure:
                if old is None:
                    self.not_served[name] = entry(spec, UNAVAILABLE, str(failure))
                raise
            self.runners[name] = runner
            self.not_served.pop(name, None)
            if old:
                log.info("model %r: %s now serves; stopping %s", name, describe(spec), describe(old.spec))
                await self.retire(name, old)

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` (its requests get 404 from now on) once the requests it holds are answered."""
        if name not in self.runners and name not in self.not_served:
            await self.installed.find(name)  # unloading what is installed but not loaded does nothing; an unknown name is 404
        async with self.change(name):
            runner = self.runners.pop(name, None)
            if runner is None:
                return
            self.not_served[name] = entry(runner.spec, UNLOADING)
            try:
                await self.retire(name, runner)
            finally:
                self.not_served[name] = entry(runner.spec, UNAVAILABLE, "unloaded")
            log.info("model %r is unloaded", name)

    def change(self, name: str) -> asyncio.Lock:
        if not self.changeable:
            raise InvalidInput("models cannot be loaded or unloaded with several server processes (--workers)")
        if self.in_flight.stopping:
            raise ServerShuttingDown("the server is shutting down")
        return self.changing.setdefault(name, asyncio.Lock())

    async def start_runner(self, spec: PluginSpec, replacing: bool = False) -> Runner:
        """A started, ready runner for ``spec``; or ModelLoadFailed, with nothing of it left running."""
        runner = self.new_runner(spec)
        try:
            runner = await self.started(runner, replacing)
            if not runner.ready:
                raise load_failed(runner)
        except BaseException:
            await runner.stop()
            raise
        return runner

    async def retire(self, name: str, runner: Runner) -> None:
        """Stop a runner that ``runners`` no longer holds, once the requests that may use it are answered.

        A request is admitted before it takes its model's runner, so only those admitted for ``name``
        until now can hold this one. Any still unanswered after ``drain_timeout`` get 503, as at shutdown.
        """
        await self.in_flight.until_answered(self.in_flight.of(name), self.drain_timeout)
        await runner.stop()

    async def start(self) -> None:
        first = dict(self.runners)
        started = await asyncio.gather(*(self.started(runner) for runner in first.values()))
        for name, runner in zip(first, started):
            if runner is first[name]:
                continue
            if self.runners.get(name) is first[name]:  # served by another runner than the command line's
                self.runners[name] = runner
            else:  # unloaded or upgraded while it started: what replaced it serves
                await runner.stop()

    async def stop(self) -> None:
        # All at once: each waits for its workers or replicas to stop, and a server of several models would
        # otherwise outlast the time an orchestrator gives it to exit.
        await asyncio.gather(*(runner.stop() for runner in self.runners.values()))



def check_version(runner: Runner, name: str, version: Optional[str]) -> None:
    """ModelNotFound unless the runner serves ``version`` (None: whichever it serves)."""
    versions = served_versions(runner.spec, runner.metadata)
    if version is not None and version not in versions:
        raise ModelNotFound(f"Request for unknown model: {quoted(name)} has no version {quoted(version)}, "
                            f"failed to get model version (served: {', '.join(versions) or 'none named'})")


def load_failed(runner: Runner) -> ModelLoadFailed:
    """Why a runner's model cannot serve, in Triton's words (its clients and scripts match on them), the model
    named once whether or not the reason begins with it."""
    name = runner.spec.name
    return ModelLoadFailed(f"failed to load model {name!r}: {runner.reason.removeprefix(f'model {name!r}: ')}",
                           runner.failed.where if runner.failed else "")

def entry(spec: PluginSpec, state: str, reason: str = "", versions: Optional[list[str]] = None) -> dict:
    """A model as the repository index lists it: its served version, else its distribution's, when it has one."""
    version = versions[0] if versions else spec.version
    return {"name": spec.name, **({"version": version} if version else {}), "state": state, "reason": reason}


def describe(spec: PluginSpec) -> str:
    return f"{spec.distribution} {spec.version}" if spec.distribution else spec.target

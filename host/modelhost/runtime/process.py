"""A model worker process seen from the server: started, told what to serve, heard from, stopped.

It is a fresh interpreter (``python -m modelhost.runtime.worker``), never a
fork of a server that has loaded models. What it prints goes to the server's
log, a line at a time, tagged with the model, the replica and its pid; only its
channel carries messages.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Optional, Union

from ..metrics import forget_process
from ..plugins import PluginSpec
from .channel import AsyncChannel
from .spill import Spill
from .deadline import within
from .messages import Elsewhere, LoadFailed, Ready, Serve

log = logging.getLogger("modelhost")
worker_log = logging.getLogger("modelhost.worker")

STOP_GRACE_SECONDS = 5.0
LONGEST_LOG_LINE = 65536


@dataclass(frozen=True)
class Exit:
    """How a worker process ended: ``label`` for metrics ("SIGKILL", "status 7", "timeout"), and in words."""

    label: str
    description: str

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Crashed:
    """The worker died before it could say whether the model loads: worth starting again."""

    reason: str


Started = Union[Ready, LoadFailed, Elsewhere, Crashed]


class WorkerProcess:
    """One worker process, from its start to its exit."""

    def __init__(self, spec: PluginSpec, replica: int):
        self.spec = spec
        self.replica = replica
        self.process: Optional[asyncio.subprocess.Process] = None
        self.channel: Optional[AsyncChannel] = None
        self.spill: Optional[Spill] = None  # large tensors to and from it, through shared memory
        self.output: list[asyncio.Task] = []

    @property
    def label(self) -> str:
        return f"{self.spec.name}[{self.replica}] pid {self.process.pid if self.process else '-'}"

    async def start(self, serve: Serve) -> Started:
        """Start the worker and have it load the model as ``serve`` says."""
        ours, theirs = socket.socketpair()
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhost.runtime.worker", "--fd", str(theirs.fileno()),
            "--name", self.spec.name, "--target", self.spec.target,
            *(["--model_dir", self.spec.model_dir] if self.spec.model_dir else []),
            "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        theirs.close()
        assert process.stdout is not None and process.stderr is not None  # piped, as asked
        self.output = [
            asyncio.create_task(self.forward(process.stdout, logging.INFO)),
            asyncio.create_task(self.forward(process.stderr, logging.WARNING)),
        ]
        self.spill = Spill(os.getpid(), process.pid)
        self.channel = channel = await AsyncChannel.open(ours, self.spill)
        try:
            await channel.send(serve)
            started = await channel.receive()
            assert isinstance(started, (Ready, LoadFailed, Elsewhere))
            return started
        except (EOFError, ConnectionError):
            return Crashed(f"its worker {await self.exit_cause()} while loading")

    async def exit_cause(self) -> Exit:
        process = self.started()
        try:
            code = await within(STOP_GRACE_SECONDS, process.wait())
        except asyncio.TimeoutError:  # it closed its channel yet lives on
            process.kill()
            code = await process.wait()
        self.sweep()
        if code < 0:
            signame = signal.Signals(-code).name
            return Exit(signame, f"was killed by {signame}")
        return Exit(f"status {code}", f"exited with status {code}")

    def sweep(self) -> None:
        """Once it has exited: the shared memory either end wrote and the other never took."""
        if self.spill is not None and self.process is not None and self.process.returncode is not None:
            self.spill.sweep()

    def kill(self) -> None:
        self.started().kill()

    def started(self) -> asyncio.subprocess.Process:
        assert self.process is not None, "the worker process was never started"
        return self.process

    async def stop(self) -> None:
        """Close the channel (the worker exits on EOF), then kill it if it does not."""
        if self.channel:
            self.channel.close()
        if self.process and self.process.returncode is None:
            try:
                await within(STOP_GRACE_SECONDS, self.process.wait())
            except asyncio.TimeoutError:
                log.error("worker %s did not exit within %gs of being stopped (in its unload hook?); killing it",
                          self.label, STOP_GRACE_SECONDS)
                self.process.kill()
                await self.process.wait()
        if self.process:
            forget_process(self.process.pid)  # a plugin's own live gauges, if it keeps any
        self.sweep()
        await asyncio.gather(*self.output, return_exceptions=True)

    async def forward(self, stream: asyncio.StreamReader, level: int) -> None:
        """The worker's stdout or stderr into the server's log, a line at a time, tagged."""
        pending = b""
        while chunk := await stream.read(LONGEST_LOG_LINE):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) >= LONGEST_LOG_LINE:
                lines, pending = [*lines, pending], b""
            for line in lines:
                worker_log.log(level, "%s: %s", self.label, line.decode("utf-8", "replace"))
        if pending:
            worker_log.log(level, "%s: %s", self.label, pending.decode("utf-8", "replace"))

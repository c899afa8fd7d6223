"""Serving a model from worker processes of its own (replicas).

Requests wait in one queue per model and each replica takes the next batch as
soon as it is free, so work always goes to a replica with none outstanding,
and one hop to the worker carries a whole batch. A
replica that dies fails its request at once with 503 and is restarted with
backoff; one stuck in a hook past the timeout fails its request with 504 and
is killed and replaced. A plugin that cannot load is reported, not restarted.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Callable, Optional

from .channel import AsyncChannel
from .batching import Pending, RequestQueue, settle, settle_batch
from ..errors import ModelhostError, ModelNotReady, ModelTimeout
from ..metrics import Metrics, forget_process
from ..model import serving_settings
from ..plugins import PluginSpec
from ..request import InferenceRequest
from .inprocess import report_ready

log = logging.getLogger("modelhost")
worker_log = logging.getLogger("modelhost.worker")

STOP_GRACE_SECONDS = 5.0
# A replica that served this long before dying was healthy: its restart starts the backoff afresh.
STABLE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0
LONGEST_LOG_LINE = 65536


class WorkerPoolRunner:
    inline = False  # its hooks run in other processes

    def __init__(self, spec: PluginSpec, options: dict, timeout: float, metrics: Metrics, in_flight: Callable[[], int]):
        self.spec = spec
        self.name = spec.name
        self.options = options  # the command line's settings for this model; they beat the plugin's
        self.timeout = timeout
        self.metrics = metrics
        self.queue = RequestQueue(spec.name, metrics.batch_size.labels(spec.name).observe, in_flight)
        self.settings = serving_settings({}, options)  # completed by the first worker's plugin settings
        self.up: set[Replica] = set()
        self.tasks: list[asyncio.Task] = []
        self.metadata: dict = {}
        self.reason = "loading"

    @property
    def ready(self) -> bool:
        return bool(self.up)

    def require_ready(self) -> None:
        if not self.up:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    async def start(self) -> None:
        first = Replica(self, 0)
        hello = await first.launch()
        if "ready" not in hello and not hello["crashed"]:
            self.reason = hello["reason"]
            log.error("model %r is not ready: %s%s", self.name, self.reason, hello["where"])
            await first.stop_process()
            return
        count = int(self.settings["replicas"])
        self.queue.configure(self.settings, count)
        others = [Replica(self, index) for index in range(1, count)]
        hellos = [hello, *await asyncio.gather(*(replica.launch() for replica in others))]
        for replica, replica_hello in zip([first, *others], hellos):
            replica.join(replica_hello)
            self.tasks.append(asyncio.create_task(replica.run(replica_hello)))
        if self.up:
            report_ready(self.spec, f"{count} worker process(es)", hello["ready"]["hooks"])

    def count_up(self) -> None:
        self.metrics.replicas_up.labels(self.name).set(len(self.up))

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        self.require_ready()
        return self.queue.submit(request)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.reason = "stopped"
        self.queue.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))


@dataclass
class Exit:
    """How a worker process ended: ``label`` for metrics ("SIGKILL", "status 7", "timeout"), and in words."""

    label: str
    description: str

    def __str__(self) -> str:
        return self.description


class Replica:
    """One slot of the pool: a worker process, restarted whenever it dies."""

    def __init__(self, pool: WorkerPoolRunner, index: int):
        self.pool = pool
        self.index = index
        self.process: Optional[asyncio.subprocess.Process] = None
        self.channel: Optional[AsyncChannel] = None
        self.output: list[asyncio.Task] = []
        self.request_id = 0

    @property
    def label(self) -> str:
        return f"{self.pool.name}[{self.index}] pid {self.process.pid if self.process else '-'}"

    async def launch(self) -> dict:
        """Start a worker; {'ready': hello}, or {'reason': why it cannot serve, 'where': the file and line that
        raised it (for the log), 'crashed': bool}."""
        ours, theirs = socket.socketpair()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhost.runtime.worker", "--fd", str(theirs.fileno()),
            "--name", self.pool.name, "--target", self.pool.spec.target,
            "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        theirs.close()
        self.output = [
            asyncio.create_task(self.forward(self.process.stdout, logging.INFO)),
            asyncio.create_task(self.forward(self.process.stderr, logging.WARNING)),
        ]
        self.channel = await AsyncChannel.open(ours)
        try:
            kind, detail = await self.channel.receive()
            if kind == "settings":
                self.pool.settings = serving_settings(detail, self.pool.options)
                await self.channel.send(self.pool.settings)
                kind, detail = await self.channel.receive()
        except (EOFError, ConnectionError):
            return {"reason": f"its worker {await self.exit_cause()} while loading", "where": "", "crashed": True}
        if kind == "ready":
            return {"ready": detail}
        reason, where = detail
        return {"reason": reason, "where": where, "crashed": False}

    async def run(self, hello: dict) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                if "ready" in hello:
                    started = loop.time()
                    self.join(hello)
                    cause = await self.serve()
                    self.lost(cause)
                    failures = 0 if loop.time() - started > STABLE_SECONDS else failures + 1
                elif hello["crashed"]:
                    failures += 1
                    self.pool.reason = hello["reason"]
                    log.error("model %r: %s", self.pool.name, hello["reason"])
                else:
                    self.pool.reason = hello["reason"]
                    log.error("model %r: replica %d cannot load: %s%s", self.pool.name, self.index, hello["reason"],
                              hello["where"])
                    return
                await self.stop_process()
                delay = min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures)
                log.info("model %r: starting replica %d in %gs", self.pool.name, self.index, delay)
                await asyncio.sleep(delay)
                self.pool.metrics.restarts.labels(self.pool.name).inc()
                hello = await self.launch()
        finally:
            self.leave()
            await self.stop_process()

    def join(self, hello: dict) -> None:
        if "ready" in hello:
            self.pool.metadata = hello["ready"]["metadata"]
            self.pool.up.add(self)
            self.pool.count_up()

    def leave(self) -> None:
        self.pool.up.discard(self)
        self.pool.count_up()

    def lost(self, cause: Exit) -> None:
        self.leave()
        self.pool.metrics.replica_lost(self.pool.name, cause.label)
        self.pool.reason = f"its worker {cause}; restarting it"
        log.error("model %r: worker %s %s", self.pool.name, self.label, cause)
        if not self.pool.up:
            self.pool.queue.fail_all(ModelNotReady(f"model {self.pool.name!r} has no worker up: its worker {cause}"))

    async def serve(self) -> Exit:
        """Take batches from the pool's queue until the worker dies or gets stuck; returns what happened."""
        replies = asyncio.ensure_future(self.channel.receive())
        batch: list[Pending] = []
        try:
            while True:
                next_batch = asyncio.ensure_future(self.pool.queue.next_batch())
                await asyncio.wait({next_batch, replies}, return_when=asyncio.FIRST_COMPLETED)
                if replies.done():  # idle, yet the channel spoke: the worker is gone
                    if next_batch.done():
                        self.pool.queue.put_back(next_batch.result())
                    next_batch.cancel()
                    return await self.exit_cause()
                batch = next_batch.result()
                if not batch:
                    continue
                self.request_id += 1
                try:
                    await self.channel.send((self.request_id, [pending.request for pending in batch]))
                    await asyncio.wait({replies}, timeout=self.pool.timeout)
                    if not replies.done():
                        self.process.kill()
                        self.answer(batch, ModelTimeout(
                            f"model {self.pool.name!r} did not answer within {self.pool.timeout:g}s; "
                            "its worker is being replaced"
                        ))
                        return Exit("timeout", f"was stuck in a hook for more than {self.pool.timeout:g}s")
                    _, outcomes, timings = replies.result()
                    for pending, spent in zip(batch, timings):
                        pending.request.timings.update(spent)
                except (EOFError, ConnectionError):
                    cause = await self.exit_cause()
                    self.answer(batch, ModelNotReady(f"model {self.pool.name!r}: its worker {cause} during this request"))
                    return cause
                settle_batch(batch, outcomes, ModelhostError)
                batch = []
                replies = asyncio.ensure_future(self.channel.receive())
        finally:
            if replies.done() and not replies.cancelled():
                replies.exception()  # the EOF that ended it, seen: asyncio would report it unretrieved
            replies.cancel()
            self.answer(batch, ModelNotReady(f"model {self.pool.name!r} is shutting down"))

    @staticmethod
    def answer(batch: list[Pending], error: Exception) -> None:
        for pending in batch:
            settle(pending.answer, error=error)

    async def exit_cause(self) -> Exit:
        try:
            code = await asyncio.wait_for(self.process.wait(), STOP_GRACE_SECONDS)
        except asyncio.TimeoutError:  # it closed its channel yet lives on
            self.process.kill()
            code = await self.process.wait()
        if code < 0:
            signame = signal.Signals(-code).name
            return Exit(signame, f"was killed by {signame}")
        return Exit(f"status {code}", f"exited with status {code}")

    async def stop_process(self) -> None:
        """Close the channel (the worker exits on EOF), then kill it if it does not."""
        if self.channel:
            self.channel.close()
        if self.process and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE_SECONDS)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.process:
            forget_process(self.process.pid)  # a plugin's own live gauges, if it keeps any
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

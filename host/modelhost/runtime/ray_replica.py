"""A model inside a Ray Serve replica: the class its deployment runs, one instance per replica process.

It does there what a worker process does (``worker.py``): loads the model with
the command line's settings over the plugin's own and answers batches through
the host's pipeline, so a plugin needs no Ray code. A synchronous model's
pipeline runs on a thread, so that the replica's event loop stays free for
Serve's health checks; an awaiting one's on that loop. The plugin's
``healthy`` hook is Serve's health check: a replica that fails it is replaced.
"""

import asyncio
import os
import sys
from typing import Union

from .. import generation, logs, sequences, tracing
from ..errors import ModelhostError, PluginLoadError
from ..hookcallers import offload_to, run_sync
from ..model import Model, import_model
from ..plugins import PluginSpec
from ..request import InferenceRequest
from .messages import Batch, Elsewhere, Generated, LoadFailed, Outcomes, Ready, Serve
from .ray_cluster import SINGLE_MACHINE
from .streams import WINDOW
from .worker import answer, start


def keep_serve_on_loopback() -> None:
    """On a single-machine Ray (``ray_cluster.SINGLE_MACHINE``), bind the replica's inter-deployment gRPC server
    to 127.0.0.1 as Ray binds its own: Serve binds it to every interface whatever Ray's node address is."""
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server
    replica.add_port_to_grpc_server = lambda server, address: bind(server, address.replace("[::]", "127.0.0.1"))


class ModelReplica:
    # Serve awaits an async __init__, which mypy does not allow.
    async def __init__(self, spec: PluginSpec, serving: Serve, search_path: list[str],  # type: ignore[misc]
                       log_level: str):
        if os.environ.get(SINGLE_MACHINE) == "0":
            keep_serve_on_loopback()
        # As a worker process logs: Ray brings the lines to the server's log, after the replica's name.
        logs.configure(log_level, text_format="%(levelname)s %(name)s: %(message)s%(request_tag)s")
        # The server's own import path first, as a worker process has it: a --plugin module beside the server.
        sys.path[:0] = [entry for entry in search_path if entry not in sys.path]
        if serving.tracing:
            tracing.trace_in_replica()
        self.model: Union[Model, None] = None
        self.started: Union[Ready, LoadFailed, Elsewhere]
        try:
            model = import_model(spec, serving.predictor)
        except PluginLoadError as exc:
            self.started = LoadFailed(str(exc), exc.where)
            return
        if model.awaits:
            model.offload = offload_to(None)
        self.started = await self.run(model, start(model, serving.command_line, "ray"))
        if isinstance(self.started, Ready):
            sequences.attach(model, model.offload or offload_to(None))  # its steps are Ray's to count, not ours
            self.model = model

    def run(self, model: Model, pipeline):
        return pipeline if model.awaits else asyncio.to_thread(run_sync, pipeline)

    def describe(self) -> Union[Ready, LoadFailed, Elsewhere]:
        """What the replica's load said: ``Ready`` with the settings it resolved, or why it cannot serve."""
        return self.started

    async def infer_batch(self, batch: Batch) -> Outcomes:
        assert self.model is not None  # the runner sends batches only to a deployment whose replicas are Ready
        return await self.run(self.model, answer(self.model, batch))

    async def generate(self, request: InferenceRequest):
        """Serve's streaming call (``handle.options(stream=True)``): the generation's parts as they come, then a
        ``Generated`` saying how it ended. Closed by the caller (a client that left), its generator is closed."""
        model = self.model
        assert model is not None  # the runner sends generations only to a deployment whose replicas are Ready
        parts: asyncio.Queue = asyncio.Queue(WINDOW)  # the caller reads as its client does: the rest waits here
        running = asyncio.create_task(self.run_generation(model, request, parts))
        try:
            while True:
                part = await parts.get()
                yield part
                if isinstance(part, Generated):
                    return
        finally:
            running.cancel()

    async def run_generation(self, model: Model, request: InferenceRequest, parts: asyncio.Queue) -> None:
        error = None
        try:
            await generation.generate(model, request, parts.put, model.offload or offload_to(None))
        except ModelhostError as failed:
            error = failed
        spans = tracing.finished_here() if request.trace_context else []
        await parts.put(Generated(0, error, request.timings, spans))

    async def check_health(self) -> None:
        """Serve's health check: raising replaces the replica."""
        if self.model is not None and self.model.watched:
            reason = await self.run(self.model, self.model.health())
            if reason:
                raise RuntimeError(reason)

    async def __del__(self) -> None:
        """Serve's shutdown of the replica: the plugin's ``unload``."""
        if self.model is not None:
            await self.run(self.model, self.model.unload())

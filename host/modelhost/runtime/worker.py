"""A model worker process: a fresh interpreter that loads one model and runs its requests.

Started by the server as ``python -m modelhost.runtime.worker --fd N --name NAME --target MODULE:ATTR
[--model_dir DIR]``.
It is told the command line's settings (``messages.Serve``), loads the model
with them over the plugin's own, says ``Ready`` or why it cannot
(``LoadFailed``), then answers each ``Batch`` and ``Probe`` until the server
closes the channel: in turn on one thread when the model's hooks are all
synchronous, on an event loop of its own, several at once, when it has an
``async def`` hook or generates (``Generations``: each ``Generate`` a task,
its parts sent as they are yielded). Only the channel carries messages: whatever the plugin prints goes to
stdout and stderr, which the server reads into its log.
"""

import argparse
import asyncio
import dataclasses
import os
import pickle
import signal
import socket
import sys
from typing import Union

from .. import generation, logs, tracing
from ..batched import infer_batch
from ..errors import ModelhostError, PluginError, PluginLoadError
from ..hookcallers import offload_to, run_sync
from ..model import Model, ServedElsewhere, import_model
from ..plugins import PluginSpec
from ..supervisor import die_with_parent
from .channel import AsyncChannel, BlockingChannel, encode
from .messages import (Batch, Close, Elsewhere, Generate, Generated, LoadFailed, Outcomes, Parts, Probe, ProbeResult,
                       Ready, Serve, Taken)
from .streams import Window


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="modelhost.runtime.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    die_with_parent(os.getppid(), signal.SIGKILL)
    # A Ctrl-C reaches the whole process group; the server stops its workers itself once it has drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The server puts each line into its own log, in its own format, after the worker's name.
    logs.configure(args.log_level, text_format="%(levelname)s %(name)s: %(message)s%(request_tag)s")

    sock = socket.socket(fileno=args.fd)
    channel = BlockingChannel(sock)
    try:
        serve = channel.receive()
        assert isinstance(serve, Serve)
        if serve.search_path:
            sys.path[:] = serve.search_path
        if serve.tracing:  # before the plugin is imported, so that its tracers are this provider's
            tracing.trace_in_replica()
        model = import_model(PluginSpec(name=args.name, target=args.target, model_dir=args.model_dir), serve.predictor)
    except EOFError:
        return 0
    except PluginLoadError as exc:
        channel.send(LoadFailed(str(exc), exc.where))
        return 0
    if model.awaits or "generate" in model.hooks:  # generations interleave, and hear of their clients between parts
        asyncio.run(serve_on_loop(model, sock, serve.command_line))
    else:
        serve_in_turn(model, channel, serve.command_line)
    return 0


def serve_in_turn(model: Model, channel: BlockingChannel, command_line: dict) -> None:
    """A model whose hooks are all synchronous: each message answered in turn, on this one thread."""
    started = run_sync(start(model, command_line))
    channel.send(started)
    if not isinstance(started, Ready):
        return
    while True:
        try:
            message = channel.receive()
        except EOFError:  # the server stops serving the model here; it kills this process after 5 s
            run_sync(model.unload())
            return
        channel.write(encoded(run_sync(answer(model, message)), model.name))


async def serve_on_loop(model: Model, sock: socket.socket, command_line: dict) -> None:
    """A model with ``async def`` hooks: each message answered by a task of its own, so that they wait together
    (the server sends at most ``max_concurrency`` batches at once); synchronous hooks go to threads."""
    model.offload = offload_to(None)
    channel = await AsyncChannel.open(sock)
    started = await start(model, command_line)
    await channel.send(started)
    if not isinstance(started, Ready):
        return
    answering: set[asyncio.Task] = set()
    generations = Generations(model, channel)
    while True:
        try:
            message = await channel.receive()
        except EOFError:  # the server stops serving the model here; it kills this process after 5 s
            break
        if generations.take(message):
            continue
        task = asyncio.create_task(reply(model, channel, message))
        answering.add(task)
        task.add_done_callback(answering.discard)
    for task in [*answering, *generations.tasks()]:
        task.cancel()
    await model.unload()


class Generations:
    """The generations this worker runs, by id: each a task, its parts sent as they are yielded, at most
    ``streams.WINDOW`` of them untaken by the client."""

    def __init__(self, model: Model, channel: AsyncChannel):
        self.model = model
        self.channel = channel
        self.running: dict[int, tuple[asyncio.Task, Window]] = {}

    def tasks(self) -> list[asyncio.Task]:
        return [task for task, _ in self.running.values()]

    def take(self, message: object) -> bool:
        """Act on a message about generations; False when it is about something else."""
        if isinstance(message, Generate):
            window = Window(lambda part: self.channel.write(encoded_part(message.id, part, self.model.name)))
            self.running[message.id] = (asyncio.create_task(self.run(message, window)), window)
        elif isinstance(message, Taken):
            running = self.running.get(message.id)
            if running is not None:
                running[1].taken(message.count)
        elif isinstance(message, Close):
            running = self.running.pop(message.id, None)
            if running is not None:
                running[0].cancel()  # its generator is closed; the server has let it go
        else:
            return False
        return True

    async def run(self, message: Generate, window: Window) -> None:
        error = None
        try:
            await generation.generate(self.model, message.request, window.put)
        except ModelhostError as failed:
            error = failed
        except asyncio.CancelledError:
            return
        finally:
            self.running.pop(message.id, None)
        spans = tracing.finished_here() if message.request.trace_context else []
        try:
            await self.channel.write(encoded(Generated(message.id, error, message.request.timings, spans),
                                             self.model.name))
        except ConnectionError:  # the server has gone; the receiving loop sees it too
            pass


def encoded_part(generation_id: int, part: object, name: str) -> list:
    try:
        return encode(Parts(generation_id, [part]))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise PluginError(f"model {name!r}: generate yielded something that cannot leave its worker: {exc}") from None


async def start(model: Model, command_line: dict, runner: str = "workers") -> Union[Ready, LoadFailed, Elsewhere]:
    try:
        await model.load(command_line, runner)
    except PluginLoadError as exc:
        return LoadFailed(str(exc), exc.where)
    except ServedElsewhere as elsewhere:
        return Elsewhere(elsewhere.runner)
    return Ready(model.settings, model.metadata, model.hooks, model.verbs, model.awaits, await model.health(),
                 model.watched)


async def answer(model: Model, message: object) -> Union[Outcomes, ProbeResult]:
    if isinstance(message, Probe):
        return ProbeResult(message.id, await model.health())
    assert isinstance(message, Batch)
    outcomes = await infer_batch(model, message.requests)
    spans = tracing.finished_here() if message.requests[0].trace_context else []
    return Outcomes(message.id, outcomes, [request.timings for request in message.requests], spans)


async def reply(model: Model, channel: AsyncChannel, message: object) -> None:
    try:
        await channel.write(encoded(await answer(model, message), model.name))
    except ConnectionError:  # the server has gone; the receiving loop sees it too
        pass


def encoded(reply: Union[Outcomes, ProbeResult, Generated], name: str) -> list:
    """A reply's frames; an outcome that cannot be pickled is replaced by the error that says so."""
    try:
        return encode(reply)
    except (pickle.PicklingError, TypeError, AttributeError):
        assert isinstance(reply, Outcomes)
        return encode(dataclasses.replace(reply, outcomes=[picklable(outcome, name) for outcome in reply.outcomes]))


def picklable(outcome, name: str):
    """The outcome itself, or the error that says it cannot leave the worker."""
    try:
        pickle.dumps(outcome, protocol=5, buffer_callback=lambda buffer: None)
        return outcome
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        return PluginError(f"model {name!r} returned something that cannot leave its worker: {exc}")


if __name__ == "__main__":
    sys.exit(main())

"""A model worker process: a fresh interpreter that loads one model and runs its requests.

Started by the server as ``python -m modelhost.runtime.worker --fd N --name NAME --target MODULE:ATTR
[--model_dir DIR]``.
It is told the command line's settings (``messages.Serve``), loads the model
with them over the plugin's own, says ``Ready`` or why it cannot
(``LoadFailed``), then answers each ``Batch`` and ``Probe`` until the server
closes the channel: in turn on one thread when the model's hooks are all
synchronous, on an event loop of its own, several at once, when it has an
``async def`` hook. Each ``Generate`` runs beside them, its parts sent as they
are yielded (``worker_generations``). Only the channel carries messages:
whatever the plugin prints goes to stdout and stderr, which the server reads
into its log.
"""

import argparse
import asyncio
import dataclasses
import inspect
import os
import pickle
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Union

from .. import event_loops, logs, sequences, tracing
from ..batched import infer_batch
from ..errors import PluginError, PluginLoadError
from ..hookcallers import offload_to, run_sync
from ..model import Model, ServedElsewhere, import_model
from ..plugins import PluginSpec
from ..supervisor import die_with_parent
from .channel import AsyncChannel, BlockingChannel, encode
from .spill import Spill
from .messages import Batch, Elsewhere, Generated, LoadFailed, Outcomes, Probe, ProbeResult, Ready, Serve
from .worker_generations import LoopGenerations, ThreadGenerations


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
    spill = Spill(os.getppid(), os.getpid())  # the server's and this worker's: the names the server sweeps
    channel = BlockingChannel(sock, spill)
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
    if needs_a_loop(model):
        event_loops.run(serve_on_loop(model, sock, serve.command_line, spill), serve.event_loop)
    else:
        serve_in_turn(model, channel, serve.command_line)
    return 0


def needs_a_loop(model: Model) -> bool:
    """An ``async def`` hook, or a ``generate`` that is not a plain generator function (an async generator's
    steps are awaited; what another function returns is only known once it is called)."""
    generate = model.callers["generate"].implementations
    return (model.awaits or "step" in model.hooks  # a scheduler's task steps its sequences (sequences.py)
            or not all(inspect.isgeneratorfunction(impl.function) for impl in generate))


def serve_in_turn(model: Model, channel: BlockingChannel, command_line: dict) -> None:
    """A model whose hooks are all synchronous: each batch and probe answered in turn on one thread, this one;
    for a model that generates, one beside it, so that this one hears of the generations' clients meanwhile."""
    started = run_sync(start(model, command_line))
    channel.send(started)
    if not isinstance(started, Ready):
        return
    generations = ThreadGenerations(model, channel)
    batches = ThreadPoolExecutor(1, "modelhost-batches") if "generate" in model.hooks else None
    while True:
        try:
            message = channel.receive()
        except EOFError:  # the server stops serving the model here; it kills this process after 5 s
            generations.stop()
            if batches is not None:
                batches.shutdown()
            run_sync(model.unload())
            return
        if not generations.take(message):
            if batches is None:
                reply_in_turn(model, channel, message)
            else:
                batches.submit(reply_in_turn, model, channel, message)
        del message  # not held while the next is awaited: its inputs may map a client's shared memory


def reply_in_turn(model: Model, channel: BlockingChannel, message: object) -> None:
    try:
        channel.write(encoded(run_sync(answer(model, message)), model.name, channel.spill))
    except OSError:  # the server has gone; the receiving thread sees it too
        pass


async def serve_on_loop(model: Model, sock: socket.socket, command_line: dict, spill: Spill) -> None:
    """A model with ``async def`` hooks: each message answered by a task of its own, so that they wait together
    (the server sends at most ``max_concurrency`` batches at once); synchronous hooks go to threads."""
    model.offload = offload_to(None)
    channel = await AsyncChannel.open(sock, spill)
    started = await start(model, command_line)
    await channel.send(started)
    if not isinstance(started, Ready):
        return
    # A step of many sequences runs on a thread, so that this loop sends their pieces and takes in new requests
    # meanwhile; one of a single sequence runs here, in place (sequences.py). Its StepReports go to the server.
    sequences.attach(model, model.offload, sequences.GatheredReports(channel.post).add)
    answering: set[asyncio.Task] = set()
    generations = LoopGenerations(model, channel)
    while True:
        try:
            message = await channel.receive()
        except EOFError:  # the server stops serving the model here; it kills this process after 5 s
            break
        if not generations.take(message):
            task = asyncio.create_task(reply(model, channel, message))
            answering.add(task)
            task.add_done_callback(answering.discard)
        del message  # not held while the next is awaited: its inputs may map a client's shared memory
    generations.stop()
    sequences.detach(model)
    for task in answering:
        task.cancel()
    await model.unload()


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
        await channel.write(encoded(await answer(model, message), model.name, channel.spill))
    except ConnectionError:  # the server has gone; the receiving loop sees it too
        pass


def encoded(reply: Union[Outcomes, ProbeResult, Generated], name: str, spill: Optional[Spill] = None) -> list:
    """A reply's frames; an outcome that cannot be pickled is replaced by the error that says so."""
    try:
        return encode(reply, spill)
    except (pickle.PicklingError, TypeError, AttributeError):
        assert isinstance(reply, Outcomes)
        return encode(dataclasses.replace(reply, outcomes=[picklable(outcome, name) for outcome in reply.outcomes]),
                      spill)


def picklable(outcome, name: str):
    """The outcome itself, or the error that says it cannot leave the worker."""
    try:
        pickle.dumps(outcome, protocol=5, buffer_callback=lambda buffer: None)
        return outcome
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        return PluginError(f"model {name!r} returned something that cannot leave its worker: {exc}")


if __name__ == "__main__":
    sys.exit(main())

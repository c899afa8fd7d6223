"""A model worker process: a fresh interpreter that loads one model and runs its requests.

Started by the server as ``python -m modelhost.runtime.worker --fd N --name NAME --target MODULE:ATTR``.
It is told the command line's settings (``messages.Serve``), loads the model
with them over the plugin's own, says ``Ready`` or why it cannot
(``LoadFailed``), then answers each ``Batch`` until the server closes the
channel. Only the channel carries messages: whatever the plugin prints goes to
stdout and stderr, which the server reads into its log.
"""

import argparse
import os
import pickle
import signal
import socket
import sys

from .. import logs
from ..errors import PluginError, PluginLoadError
from ..model import load_model
from ..plugins import PluginSpec
from ..supervisor import die_with_parent
from .channel import BlockingChannel
from .messages import Batch, LoadFailed, Outcomes, Ready, Serve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="modelhost.runtime.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    die_with_parent(os.getppid(), signal.SIGKILL)
    # A Ctrl-C reaches the whole process group; the server stops its workers itself once it has drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The server puts each line into its own log, in its own format, after the worker's name.
    logs.configure(args.log_level, text_format="%(levelname)s %(name)s: %(message)s%(request_tag)s")

    channel = BlockingChannel(socket.socket(fileno=args.fd))
    try:
        serve = channel.receive()
        assert isinstance(serve, Serve)
        model = load_model(PluginSpec(name=args.name, target=args.target), serve.command_line)
    except EOFError:
        return 0
    except PluginLoadError as exc:
        channel.send(LoadFailed(str(exc), exc.where))
        return 0
    channel.send(Ready(model.settings, model.metadata, model.hooks))
    while True:
        try:
            batch = channel.receive()
        except EOFError:  # the server stops serving the model here; it kills this process after 5 s
            model.unload()
            return 0
        assert isinstance(batch, Batch)
        outcomes = model.infer_batch(batch.requests)
        timings = [request.timings for request in batch.requests]
        try:
            channel.send(Outcomes(batch.id, outcomes, timings))
        except (pickle.PicklingError, TypeError, AttributeError):
            channel.send(Outcomes(batch.id, [picklable(outcome, args.name) for outcome in outcomes], timings))


def picklable(outcome, name: str):
    """The outcome itself, or the error that says it cannot leave the worker."""
    try:
        pickle.dumps(outcome, protocol=5, buffer_callback=lambda buffer: None)
        return outcome
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        return PluginError(f"model {name!r} returned something that cannot leave its worker: {exc}")


if __name__ == "__main__":
    sys.exit(main())

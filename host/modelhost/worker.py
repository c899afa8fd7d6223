"""A worker process: a fresh interpreter that loads one model and runs its requests.

Started by the server as ``python -m modelhost.worker --fd N --name NAME --target MODULE:ATTR``.
It says hello once (the model's metadata and settings, or why it cannot load),
then answers requests one at a time until the server closes the channel. Only
the channel carries messages: whatever the plugin prints goes to stdout and
stderr, which the server reads into its log.
"""

import argparse
import logging
import os
import pickle
import signal
import socket
import sys

from .channel import BlockingChannel
from .errors import ModelhostError, PluginError, PluginLoadError
from .model import load_model
from .plugins import PluginSpec
from .supervisor import die_with_parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="modelhost.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    die_with_parent(os.getppid(), signal.SIGKILL)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    channel = BlockingChannel(socket.socket(fileno=args.fd))
    try:
        model = load_model(PluginSpec(name=args.name, target=args.target))
    except PluginLoadError as exc:
        channel.send(("failed", str(exc)))
        return 0
    channel.send(("ready", {"metadata": model.metadata, "settings": model.settings, "hooks": model.hooks}))
    while True:
        try:
            request_id, request = channel.receive()
        except EOFError:
            return 0
        try:
            reply = (request_id, True, model.infer(request))
        except ModelhostError as exc:
            reply = (request_id, False, exc)
        try:
            channel.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            error = PluginError(f"model {args.name!r} returned something that cannot leave its worker: {exc}")
            channel.send((request_id, False, error))


if __name__ == "__main__":
    sys.exit(main())

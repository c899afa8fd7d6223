"""The ``modelhost`` command: ``serve`` the installed model plugins, ``list`` them."""

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Union

from . import __version__, event_loops, kserve_flags, logs, settings
from .listing import list_command
from .errors import CannotServe, PluginLoadError
from .grpc import bounds as grpc_bounds
from .plugins import ENTRY_POINT_GROUP, chosen_specs
from .scaffold import write_plugin
from .protocol.limits import RequestLimits
from .server import ServerConfig, default_hook_threads, serve
from .settings import Bounded
from .runtime.shared_memory import LOOPBACK

log = logging.getLogger("modelhost")

# A static bearer token for a server that stands alone; under KServe the ingress authenticates.
AUTH_TOKEN_VARIABLE = "MODELHOST_AUTH_TOKEN"

# Model settings the command line can give every model (N) or one (NAME=N); they beat the plugin's own.
MODEL_SETTINGS = [
    ("replicas", "N", "worker processes for every model, or with NAME= for one model; 0 serves in the "
     "server process (default: what the plugin's settings ask for, else 1)"),
    ("max_batch_size", "N", "gather up to N concurrent requests into one predict call (or sequences into one step, "
     "for a model with begin and step hooks), for every model or with NAME= for one (default: the plugin's "
     "settings, else 1: no batching)"),
    ("max_batch_wait_ms", "MS", "how long a batch may wait for more requests (default: the plugin's settings, else 5)"),
    ("max_queue_size", "N", "requests that may wait for a model; more get 503 with Retry-After at once "
     "(default: the plugin's settings, else 256)"),
    ("max_concurrency", "N", "batches a model with async hooks, and generations any model, runs at once in each "
     "process serving it (default: the plugin's settings, else 64)"),
    ("health_interval_s", "SECONDS", "how often a model's healthy hook is asked (default: the plugin's "
     "settings, else 5)"),
    ("sequence_memory", "N", "the most one sequence of a model with begin and step hooks holds, in the units of "
     "its memory_budget (default: the plugin's settings, else 0)"),
    ("memory_budget", "N", "what the active sequences of a model with begin and step hooks may hold together, in "
     "each process serving it; more wait (default: the plugin's settings, else 0: no budget)"),
    ("runner", "RUNNER", "'workers' (worker processes, or this process with --replicas 0) or 'ray' (Ray Serve "
     "replicas; pip install 'modelhost[ray]') (default: the plugin's settings, else workers)"),
    ("ray_actor_options", "JSON", "with --runner ray: each replica's Ray actor options, as Ray Serve takes them, "
     "e.g. '{\"num_cpus\": 1, \"num_gpus\": 1}' (default: the plugin's settings, else one CPU)"),
    ("autoscaling_config", "JSON", "with --runner ray: Serve's autoscaling_config, e.g. '{\"min_replicas\": 1, "
     "\"max_replicas\": 4}', in place of a fixed number of replicas (default: the plugin's settings, else none)"),
]


def flag(check) -> Callable[[str], object]:
    """An argparse type from a check of ``settings``: its ValueError is argparse's usage error."""

    def parse(text: str):
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


PORT = flag(Bounded(int, 0, 65535))


def text_boolean(text: str) -> bool:
    """KServe's spelling of a boolean flag's value (distutils' strtobool): true/false, yes/no, on/off, 1/0."""
    lowered = text.lower()
    if lowered in ("true", "t", "yes", "y", "on", "1"):
        return True
    if lowered in ("false", "f", "no", "n", "off", "0"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def shared_memory_choice(text: str) -> Union[bool, str]:
    return LOOPBACK if text.lower() == LOOPBACK else text_boolean(text)


COUNT = flag(settings.COUNT)
SECONDS = flag(Bounded(float, 0, low_included=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelhost", description="Serve model plugins over KServe's V1 and V2 protocols.")
    parser.add_argument("--version", action="version", version=f"modelhost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve", help="serve the installed model plugins over HTTP",
        epilog=f"With ${AUTH_TOKEN_VARIABLE} set, every request but the health checks must carry "
        "'Authorization: Bearer' and that token (else 401).",
    )
    serve_parser.add_argument(
        "--http_port", "--http-port", type=PORT, default=os.environ.get("PORT"),
        help="port to listen on (default: $PORT when set, else 8080, or 8443 with TLS; 0 picks a free port)",
    )
    serve_parser.add_argument(
        "--grpc_port", "--grpc-port", type=PORT, default=8081,
        help="port for the Open Inference Protocol over gRPC (default: 8081, as KServe; 0 picks a free port)",
    )
    serve_parser.add_argument(
        "--enable_grpc", "--enable-grpc", type=flag(text_boolean), default=True, metavar="true|false",
        help="serve gRPC as well as HTTP (default: true, as KServe)",
    )
    serve_parser.add_argument(
        "--enable_shared_memory", "--enable-shared-memory", type=flag(shared_memory_choice), default=LOOPBACK,
        metavar="true|false|loopback", help="Triton's system shared memory extension: for every client, for none, "
        "or for clients on this machine alone (default: loopback)",
    )
    serve_parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve_parser.add_argument(
        "--workers", type=COUNT, default=1,
        help="server processes sharing the port; each loads every model after the fork (default: 1)",
    )
    serve_parser.add_argument(
        "--max_buffer_size", "--max-buffer-size", type=COUNT, default=10 * 1024 * 1024,
        help="largest request body in bytes; larger ones get 413 (default: 10485760, 10 MiB)",
    )
    for limit in dataclasses.fields(RequestLimits):
        serve_parser.add_argument(f"--{limit.name}", f"--{limit.name.replace('_', '-')}", type=COUNT, metavar="N",
                                  default=limit.default, help=limit.metadata["help"])
    serve_parser.add_argument(
        "--max_asyncio_workers", "--max-asyncio-workers", type=COUNT, default=default_hook_threads(),
        help="threads that run plugin hooks in each process (default: min(32, cpus + 4))",
    )
    for setting, metavar, help_text in MODEL_SETTINGS:
        dashed = setting.replace("_", "-")
        spellings = [f"--{setting}", *([f"--{dashed}"] if dashed != setting else [])]
        serve_parser.add_argument(*spellings, action="append", type=per_model(settings.RANGES[setting], metavar),
                                  default=[], metavar=f"[NAME=]{metavar}", help=help_text)
    serve_parser.add_argument(
        "--timeout", type=SECONDS, default=120.0,
        help="seconds a request may spend in a model's hooks before it gets 504; a stuck worker "
        "is replaced (default: 120)",
    )
    serve_parser.add_argument(
        "--graceful_timeout", "--graceful-timeout", type=flag(Bounded(float, 0)), default=30.0,
        help="on SIGTERM, seconds to let the requests in flight finish while new ones get 503; those "
        "still running then get 503 too (default: 30)",
    )
    serve_parser.add_argument(
        "--idle_timeout", "--idle-timeout", type=SECONDS, default=75.0,
        help="seconds a connection may sit idle, or take to send a request's headers, before it is "
        "closed (default: 75, above the 60 of common load balancers)",
    )
    serve_parser.add_argument(
        "--body_timeout", "--body-timeout", type=SECONDS, default=60.0,
        help="seconds a client may take to send a request's body (default: 60)",
    )
    serve_parser.add_argument(
        "--model", action="append", default=[], metavar="NAME",
        help="serve only this installed model; repeat for several (default: every installed model)",
    )
    serve_parser.add_argument(
        "--plugin", action="append", default=[], metavar="[NAME=]MODULE:ATTR",
        help="also serve a plugin that is not installed, by import path; installed models are then "
        "served only when named with --model",
    )
    serve_parser.add_argument(
        "--reload", action="store_true",
        help="during development: serve a plugin's changed code as soon as its source files change, through "
        "the repository's upgrade (worker processes only, one server process)",
    )
    serve_parser.add_argument(
        "--ray_address", "--ray-address", metavar="ADDRESS",
        help="with --runner ray: the Ray cluster to join, 'auto' or HOST:PORT (default: a Ray of its own on 127.0.0.1)",
    )
    serve_parser.add_argument("--log-level", "--log_level", default="INFO", help="logging level (default: INFO)")
    serve_parser.add_argument(
        "--log-format", "--log_format", choices=logs.FORMATS, default="text",
        help="log lines as text, or as one JSON object each (default: text)",
    )

    kserve_flags.add_arguments(serve_parser, flag, flag(text_boolean))
    grpc_bounds.add_arguments(serve_parser, flag)

    new_parser = commands.add_parser("new", help="write a new plugin package, with a test, into the folder NAME")
    new_parser.add_argument("name", metavar="NAME", help="the model's name, which is also the package's")
    new_parser.add_argument("--log-level", "--log_level", default="WARNING", help=argparse.SUPPRESS)
    new_parser.add_argument("--log-format", "--log_format", default="text", help=argparse.SUPPRESS)

    list_parser = commands.add_parser("list", help="list the installed model plugins and the hooks each implements")
    list_parser.add_argument("--log-level", "--log_level", default="WARNING", help=argparse.SUPPRESS)
    list_parser.add_argument("--log-format", "--log_format", default="text", help=argparse.SUPPRESS)
    return parser


def per_model(check, metavar: str):
    """An argparse type for ``VALUE`` or ``NAME=VALUE``: (name or None for every model, value)."""

    def parse(text: str) -> tuple[Optional[str], object]:
        # A JSON value may hold "=" itself; a name never does.
        name, _, value = text.partition("=") if "=" in text and not text.startswith("{") else ("", "", text)
        try:
            return name or None, check(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected {metavar} or NAME={metavar}, where {metavar} {error}") \
                from None

    return parse


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            kserve_flags.configure_logging(args)
        else:
            logs.configure(args.log_level, args.log_format)
    except ValueError as error:
        logs.configure(args.log_level, args.log_format)
        log.error("%s", error)
        return 2
    try:
        return COMMANDS[args.command](args)
    except (PluginLoadError, CannotServe) as exc:
        log.error("%s", exc)
        return 2


def serve_command(args: argparse.Namespace) -> int:
    """Serves until stopped, then exits the process; returns only when there is nothing to serve."""
    specs = chosen_specs(args.model, args.plugin, kserve_flags.model_dir_models(args))
    specs = specs if args.model_dir else kserve_flags.renamed(specs, args.model_name)  # --model_dir's are named
    kserve_flags.report_no_effect(args)
    if args.plugin:
        # As `python -m` does, and as the worker processes (`python -m modelhost.runtime.worker`) do for their own part.
        sys.path.insert(0, os.getcwd())
    if not specs:
        log.error(
            "no model to serve: install a plugin that declares a %r entry point, or pass --plugin MODULE:ATTR",
            ENTRY_POINT_GROUP,
        )
        return 2
    if args.reload and (args.workers > 1 or any(count == 0 for _, count in args.replicas)):
        log.error("--reload loads changed code into new worker processes: it needs one server process "
                  "(--workers 1) and worker processes (not --replicas 0)")
        return 2
    if args.runner and args.workers > 1 and any(runner == "ray" for _, runner in args.runner):
        log.error("--runner ray deploys each model once, to Ray: it needs one server process (--workers 1)")
        return 2
    try:
        tls = kserve_flags.tls_files(args)
        event_loop = event_loops.resolve(args.event_loop)
    except ValueError as error:
        log.error("%s", error)
        return 2
    http_port: int = args.http_port if args.http_port is not None else kserve_flags.HTTPS_PORT if tls else 8080
    config = ServerConfig(
        specs=specs,
        host=args.host,
        http_port=http_port,
        tls=tls,
        grpc_port=args.grpc_port if args.enable_grpc else None,
        server_processes=args.workers,
        max_buffer_size=args.max_buffer_size,
        grpc_max_receive=args.grpc_max_receive_message_length or args.max_buffer_size,
        grpc_max_send=args.grpc_max_send_message_length,
        grpc_bounds=grpc_bounds.GRPCBounds.from_arguments(args),
        hook_threads=args.max_asyncio_workers,
        timeout=args.timeout,
        graceful_timeout=args.graceful_timeout,
        idle_timeout=args.timeout_keep_alive or args.idle_timeout,
        body_timeout=args.body_timeout,
        auth_token=os.environ.get(AUTH_TOKEN_VARIABLE) or None,
        model_settings={setting: dict(getattr(args, setting)) for setting, *_ in MODEL_SETTINGS if getattr(args, setting)},
        reload=args.reload,
        predictor=kserve_flags.predictor(args),
        ray_address=args.ray_address,
        docs_pages=args.enable_docs_url,
        shared_memory=args.enable_shared_memory,
        event_loop=event_loop,
        limits=RequestLimits(**{limit.name: getattr(args, limit.name) for limit in dataclasses.fields(RequestLimits)}),
    )
    serve(config)


def new_command(args: argparse.Namespace) -> int:
    try:
        folder = write_plugin(args.name, Path.cwd())
    except ValueError as error:
        log.error("%s", error)
        return 2
    print(f"wrote {folder}: install it with `pip install -e '{folder}[test]'`, test it with "
          f"`python -m pytest {folder}`, serve it with `modelhost serve --model {args.name}`")
    return 0


COMMANDS = {"serve": serve_command, "list": list_command, "new": new_command}


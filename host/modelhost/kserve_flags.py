"""KServe's model server flags that ``modelhost serve`` takes with KServe's spelling: what each does here.

A container spec written for KServe's Python server passes these; each acts
as in KServe, or, where it means nothing here, is accepted and named once in
the start-up log as having no effect. Flags modelhost shares with KServe and
had before (``--http_port``, ``--grpc_port``, ``--workers``,
``--max_asyncio_workers``, ``--enable_grpc``) are in ``cli.py``. Beside
KServe's built-in servers' ``--model_dir`` are modelhost's two flags that say
which model format serves it (``formats``).
"""

import argparse
import dataclasses
import json
import logging
import logging.config
import os
from pathlib import Path
from typing import Callable, Optional

from . import event_loops, logs
from .errors import PluginLoadError
from .formats import FormatChoice, model_dir_specs
from .plugins import PluginSpec
from .predictor import PROTOCOLS, PredictorSettings
from .settings import COUNT, Bounded
from .tls import TLSFiles

log = logging.getLogger("modelhost")

CERT_VARIABLE, KEY_VARIABLE = "KSERVE_TLS_CERT_FILE", "KSERVE_TLS_KEY_FILE"
HTTPS_PORT = 8443  # KServe's, when TLS is on and no port was given

# Accepted, and named once at start-up as having no effect here, with the reason.
NO_EFFECT = {
    "--max_threads": "gRPC runs on the event loop (grpc.aio), with no thread pool of its own",
}


def add_arguments(parser: argparse.ArgumentParser, flag: Callable[[Callable], Callable[[str], object]],
                  boolean: Callable[[str], object]) -> None:
    """KServe's flags, with KServe's spellings and defaults (None where modelhost's own default stands).

    ``flag(check)`` makes an argparse type of one of ``settings``' checks; ``boolean`` reads KServe's booleans.
    """
    count = flag(COUNT)
    parser.add_argument("--model_name", default=None, metavar="NAME",
                        help="serve the one selected model under NAME, as KServe's --model_name (default: its own name; "
                        "with --model_dir, 'model')")
    parser.add_argument("--model_dir", type=Path, default=None, metavar="DIR",
                        help="serve the model files in DIR with no code, as KServe's built-in servers do: one model, "
                        "or one per folder in DIR, named after it; the format is picked by the files")
    parser.add_argument("--model_format", default=None, metavar="FORMAT",
                        help="the installed model format that serves --model_dir (sklearn, xgboost, onnx, ...), "
                        "for files that do not say, and to allow a format whose files run code when loaded")
    parser.add_argument("--allow_format", action="append", default=[], metavar="FORMAT",
                        help="let --model_dir's files pick this format even though loading them runs code (a pickle): "
                        "only for a trusted folder; repeat for several")
    parser.add_argument("--configure_logging", type=boolean, default=True, metavar="true|false",
                        help="false: leave Python's logging as it is, for --log_config_file or the plugin to set up "
                        "(default: true)")
    parser.add_argument("--log_config_file", type=Path, default=None, metavar="FILE",
                        help="a logging configuration (YAML or JSON, logging.config.dictConfig's schema) applied over "
                        "modelhost's own")
    parser.add_argument("--access_log_format", default=None, metavar="FORMAT",
                        help="the access line as a %%-format of gunicorn's atoms (" + ", ".join(
                            f"%%({atom})s: {meaning}" for atom, meaning in logs.AccessStyle.ATOMS.items()) + ")")
    parser.add_argument("--enable_latency_logging", type=boolean, default=True, metavar="true|false",
                        help="each stage's time (queue, preprocess, predict, postprocess) on the access line "
                        "(default: true)")
    parser.add_argument("--timeout-keep-alive", "--timeout_keep_alive", type=count, default=None, metavar="SECONDS",
                        dest="timeout_keep_alive", help="KServe's spelling of --idle_timeout")
    parser.add_argument("--grpc_max_receive_message_length", type=count, default=None, metavar="BYTES",
                        help="the largest gRPC message a client may send (default: --max_buffer_size)")
    parser.add_argument("--grpc_max_send_message_length", type=count, default=None, metavar="BYTES",
                        help="the largest gRPC message the server sends (default: no limit)")
    parser.add_argument("--ssl_certfile", type=Path, default=os.environ.get(CERT_VARIABLE) or None, metavar="FILE",
                        help=f"serve HTTPS (and gRPC with TLS) with this certificate, read again when it changes "
                        f"(default: ${CERT_VARIABLE}); the HTTP port is then 8443 unless given")
    parser.add_argument("--ssl_keyfile", type=Path, default=os.environ.get(KEY_VARIABLE) or None, metavar="FILE",
                        help=f"the certificate's private key (default: ${KEY_VARIABLE})")
    add_predictor_arguments(parser, boolean, count, flag(Bounded(int, 0)))
    parser.add_argument("--max_threads", type=count, default=None,
                        help=f"accepted; no effect: {NO_EFFECT['--max_threads']}")
    parser.add_argument("--event-loop", "--event_loop", dest="event_loop", choices=event_loops.CHOICES,
                        default=event_loops.DEFAULT, help="the serving processes' event loop: auto (uvloop when "
                        "installed, as KServe), asyncio or uvloop (default: auto)")
    parser.add_argument("--enable_docs_url", type=boolean, default=True, metavar="true|false",
                        help="serve the API as pages where requests can be tried: /docs, and each model's at "
                        "/v2/models/NAME/docs (default: true)")


def add_predictor_arguments(parser: argparse.ArgumentParser, boolean: Callable[[str], object],
                            count: Callable[[str], object], at_least_0: Callable[[str], object]) -> None:
    """The transformer role's flags, as the KServe controller passes them to a transformer's container."""
    parser.add_argument("--predictor_host", default=None, metavar="HOST[:PORT]",
                        help="serve as a KServe transformer: predict sends each preprocessed batch to the model of the "
                        "same name on this predictor")
    parser.add_argument("--predictor_protocol", choices=PROTOCOLS, default=None,
                        help="how to call the predictor: KServe V1 or V2 over REST, or V2 over gRPC (default: v1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="KServe's older spelling of --predictor_protocol, which wins when both are given")
    parser.add_argument("--predictor_use_ssl", type=boolean, default=False, metavar="true|false",
                        help="call the predictor over HTTPS (gRPC with TLS), checked against the system's CAs "
                        "(default: false)")
    parser.add_argument("--predictor_request_timeout_seconds", type=count, default=600, metavar="SECONDS",
                        help="how long a call to the predictor may take, retries included, before 504 (default: 600)")
    parser.add_argument("--predictor_request_retries", type=at_least_0, default=0, metavar="N",
                        help="further tries when the predictor cannot be connected to; never once it has answered "
                        "(default: 0)")
    parser.add_argument("--enable_predictor_health_check", type=boolean, nargs="?", const=True, default=False,
                        metavar="true|false",
                        help="ready only while the predictor says the model is ready (default: false)")


def predictor(args: argparse.Namespace) -> Optional[PredictorSettings]:
    """The transformer role's predictor, when --predictor_host names one."""
    if not args.predictor_host:
        return None
    return PredictorSettings(
        host=args.predictor_host, protocol=args.predictor_protocol or args.protocol or "v1",
        use_ssl=args.predictor_use_ssl, timeout_s=args.predictor_request_timeout_seconds,
        retries=args.predictor_request_retries, health_check=args.enable_predictor_health_check)


def configure_logging(args: argparse.Namespace) -> None:
    """modelhost's log format unless --configure_logging false, then --log_config_file over it, and the
    access line's style. ValueError says what is wrong with them."""
    if args.configure_logging:
        logs.configure(args.log_level, args.log_format)
    if args.log_config_file is not None:
        logging.config.dictConfig(read_config(args.log_config_file))
    logs.configure_access(logs.AccessStyle(stages=args.enable_latency_logging, layout=args.access_log_format))


def read_config(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"--log_config_file {path}: {error.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # only for a YAML file, as KServe reads one

            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except Exception as error:  # yaml's and json's errors share no base class
        raise ValueError(f"--log_config_file {path} cannot be read: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--log_config_file {path} does not hold a mapping (logging.config.dictConfig's schema)")
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)
    return config


def model_dir_models(args: argparse.Namespace) -> list[PluginSpec]:
    """The models in --model_dir, each with the format's plugin that serves it (none without --model_dir)."""
    if args.model_dir is None:
        return []
    return model_dir_specs(args.model_dir, args.model_name,
                           FormatChoice(args.model_format, frozenset(args.allow_format)))


def renamed(specs: list[PluginSpec], model_name: Optional[str]) -> list[PluginSpec]:
    """The selected model served under --model_name; PluginLoadError names them when several are selected."""
    if model_name is None:
        return specs
    if len(specs) != 1:
        raise PluginLoadError(f"--model_name names the one model served, and {len(specs)} are selected "
                              f"({', '.join(spec.name for spec in specs) or 'none'}): select one with --model or "
                              "--plugin")
    return [dataclasses.replace(specs[0], name=model_name)]


def tls_files(args: argparse.Namespace) -> Optional[TLSFiles]:
    """The certificate and key, when both are given; ValueError when only one is."""
    if args.ssl_certfile is None and args.ssl_keyfile is None:
        return None
    if args.ssl_certfile is None or args.ssl_keyfile is None:
        raise ValueError("TLS needs both --ssl_certfile and --ssl_keyfile (or $KSERVE_TLS_CERT_FILE and "
                         "$KSERVE_TLS_KEY_FILE)")
    return TLSFiles(args.ssl_certfile, args.ssl_keyfile)


def report_no_effect(args: argparse.Namespace) -> None:
    for flag, reason in NO_EFFECT.items():
        if getattr(args, flag.lstrip("-").replace("-", "_")) is not None:
            log.info("%s has no effect here: %s", flag, reason)

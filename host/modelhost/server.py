"""Running the server: HTTP and gRPC in one process, or in several forked processes sharing the ports."""

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, Union

import tornado.netutil

from . import event_loops, tracing
from .http.app import make_app
from .inference import Inference
from .inflight import InFlight
from .logs import request_id_source
from .errors import CannotServe
from .grpc.bounds import GRPCBounds
from .http.httpserver import HTTPServer
from .metrics import Metrics, remove_shared, share_between_processes
from .plugins import PluginSpec
from .predictor import PredictorSettings
from .protocol.limits import RequestLimits
from .reload import reload_on_change
from .repository import ModelRepository
from .runtime.inprocess import InProcessRunner
from .runtime.pool import WorkerPoolRunner
from .runtime.ray_cluster import RayCluster
from .runtime.ray_runner import RayServeRunner
from .runtime.shared_memory import LOOPBACK, Regions
from .settings import CommandLineSettings, command_line_for
from .supervisor import LoadedBoard, run_forked
from .tls import Certificates, TLSFiles

if TYPE_CHECKING:
    from .grpc.server import GRPCServer

log = logging.getLogger("modelhost")

# Exit status of a server process that could load none of its models: nothing to restart.
EXIT_NO_MODEL = 3
# gRPC calls still running when the server stops (after the drain) get this long, then are cancelled.
GRPC_STOP_GRACE_SECONDS = 1.0


def default_hook_threads() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass
class ServerConfig:
    specs: list[PluginSpec] = field(default_factory=list)
    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: Optional[int] = 8081  # None: no gRPC (--enable_grpc false)
    server_processes: int = 1  # --workers: server processes forked to share the port
    max_buffer_size: int = 10 * 1024 * 1024
    grpc_max_receive: Optional[int] = None  # bytes; None: max_buffer_size
    grpc_max_send: Optional[int] = None  # bytes; None: no limit
    grpc_bounds: GRPCBounds = field(default_factory=GRPCBounds)  # streams, connections and their times (grpc/bounds.py)
    hook_threads: int = field(default_factory=default_hook_threads)  # --max_asyncio_workers, per server process
    timeout: float = 120.0
    # Seconds SIGTERM waits for the requests in flight before answering the rest with 503.
    graceful_timeout: float = 30.0
    # Slow or idle clients are dropped, so that they cannot hold connections open for ever.
    idle_timeout: float = 75.0
    body_timeout: float = 60.0
    auth_token: Optional[str] = None  # a bearer token every request but the health checks must carry
    # Model settings given on the command line; "replicas" 0 serves a model in the server process.
    model_settings: CommandLineSettings = field(default_factory=dict)
    reload: bool = False  # serve a plugin's changed code as soon as its source files change (reload.py)
    tls: Optional[TLSFiles] = None  # HTTPS and TLS for gRPC
    predictor: Optional[PredictorSettings] = None  # the transformer role: where predict sends its inputs
    ray_address: Optional[str] = None  # the Ray cluster that models with runner "ray" join; None: a local Ray
    docs_pages: bool = True  # /docs and each model's page (--enable_docs_url)
    shared_memory: Union[bool, str] = LOOPBACK  # Triton's system shared memory: for all, none, or loopback clients
    event_loop: str = "asyncio"  # what the serving processes and their workers run on (event_loops.resolve)
    limits: RequestLimits = field(default_factory=RequestLimits)  # what one request may hold beyond its bytes


def serve(config: ServerConfig) -> NoReturn:
    """Bind the port, then serve in this process or in ``config.server_processes`` forked ones.

    Models load in each serving process after the fork, never before, so no
    process inherits another's threads or sessions.
    """
    if config.tls:
        Certificates(config.tls)  # a pair that cannot serve is refused before anything starts
    # uvloop starts worker processes with fork(), which runs gRPC's fork handlers (asyncio's loop uses vfork,
    # which does not), and they print a warning to stderr whenever gRPC's threads are busy. A worker execs at once
    # and needs none of them. Read by gRPC's core when it starts, in each serving process: set before that.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    try:
        sockets = tornado.netutil.bind_sockets(config.http_port, config.host)
    except OSError as exc:
        raise CannotServe(f"cannot listen on {config.host}:{config.http_port}: {exc.strerror} "
                          "(--http_port picks another port)") from None
    if config.grpc_port:  # gRPC binds in each serving process, after any fork: a port taken is said here, once
        check_free(config.host, config.grpc_port)
    host, port = sockets[0].getsockname()[:2]
    log.info("listening on %s://%s:%d with %d process(es)", "https" if config.tls else "http", host, port,
             config.server_processes)
    if config.grpc_port == 0 and config.server_processes > 1:  # the processes must agree on one port
        config = dataclasses.replace(config, grpc_port=free_port(config.host))
    # Shared files cost each request several microseconds; one process keeps its metrics in memory.
    shared = share_between_processes() if config.server_processes > 1 else None
    try:
        if config.server_processes > 1:
            status = run_forked(config.server_processes, lambda board: exit_now(serve_here(config, sockets, board)), EXIT_NO_MODEL)
        else:
            status = serve_here(config, sockets)
    finally:
        remove_shared(shared)
    exit_now(status)


def check_free(host: str, port: int) -> None:
    """CannotServe, naming the flags that help, when another server listens on the gRPC port."""
    try:
        probes = tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        raise CannotServe(f"cannot serve gRPC on {host}:{port}: {exc.strerror} (--grpc_port picks another port; "
                          "--enable_grpc false serves HTTP alone)") from None
    for probe in probes:
        probe.close()


def serve_here(config: ServerConfig, sockets, board: Optional[LoadedBoard] = None) -> int:
    log.debug("on the %s event loop", config.event_loop)
    return event_loops.run(_serve(config, sockets, board), config.event_loop)


def exit_now(status: int) -> NoReturn:
    # A hook still running (a long load, a stuck predict) must not hold the
    # process at exit, which joins the hook threads: leave without joining.
    logging.shutdown()
    os._exit(status)


async def start_grpc(config: ServerConfig, inference: Inference, certificates: Optional[Certificates]) -> "GRPCServer":
    assert config.grpc_port is not None
    # Imported here, in the serving process: nothing of gRPC's core may be made before a fork.
    from .grpc.server import GRPCServer
    from .grpc.service import GRPCServing

    grpc_server = GRPCServer(GRPCServing(inference, request_id_source(), config.auth_token, config.limits),
                             config.host, config.grpc_port,
                             config.grpc_max_receive or config.max_buffer_size, config.grpc_max_send,
                             shared_port=config.server_processes > 1,
                             credentials=certificates.grpc_credentials() if certificates else None,
                             bounds=config.grpc_bounds)
    await grpc_server.start()
    log.info("serving gRPC%s on %s:%d", " with TLS" if certificates else "", config.host, grpc_server.port)
    return grpc_server


async def connect_to_ray(ray_cluster: RayCluster, stopping: asyncio.Event) -> None:
    """Start or join Ray, unless told to stop first: Ray's start can wait for ever on a GCS that died."""
    connecting = asyncio.create_task(ray_cluster.connect())
    await asyncio.wait({connecting, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        log.error("stopped while starting or joining Ray")
        return
    if connecting.exception():  # each model placed on Ray says so, with the reason, when it starts
        error = connecting.exception()
        log.error("cannot start or join Ray: %s: %s", type(error).__name__, error)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def make_runner(spec: PluginSpec, in_flight, config: ServerConfig, metrics: Metrics, executor: ThreadPoolExecutor,
                ray_cluster: RayCluster, runner: Optional[str] = None):
    """The runner the command line chooses for the model, or ``runner``: the one its plugin's settings ask for."""
    settings = command_line_for(config.model_settings, spec.name)
    if runner:
        settings["runner"] = runner
    if settings.get("runner") == "ray":
        return RayServeRunner(spec, settings, config.timeout, metrics, in_flight, ray_cluster, config.predictor)
    if settings.get("replicas") == 0:
        return InProcessRunner(spec, settings, config.timeout, metrics, executor, config.hook_threads, in_flight,
                               config.predictor)
    return WorkerPoolRunner(spec, settings, config.timeout, metrics, in_flight, config.predictor)


async def _serve(config: ServerConfig, sockets, board: Optional[LoadedBoard]) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    return await serve_until(config, sockets, stopping, board=board)


async def serve_until(config: ServerConfig, sockets, stopping: asyncio.Event,
                      started: Callable[[ModelRepository], None] = lambda repository: None,
                      board: Optional[LoadedBoard] = None) -> int:
    """One serving process: load the models, serve until ``stopping`` is set, drain, stop; the exit status.

    ``started`` is told the repository once every model has loaded, or failed to; so is the ``board``
    of the server processes, which must all have loaded before any of them reports the server ready.
    """
    # In-process plugin hooks are synchronous; they run here, off the event loop.
    executor = ThreadPoolExecutor(config.hook_threads, thread_name_prefix="modelhost-hooks")
    tracer = tracing.server_tracer()  # before the runners, which ask their workers and replicas to trace
    metrics = Metrics()
    in_flight = InFlight()
    ray_cluster = RayCluster(config.ray_address)  # started or joined once a model is placed on it
    repository = ModelRepository(
        config.specs, lambda spec, count, runner: make_runner(spec, count, config, metrics, executor, ray_cluster, runner),
        in_flight,
        config.graceful_timeout, changeable=config.server_processes == 1,
        others_loaded=board.all_loaded if board else lambda: True,
    )
    certificates = Certificates(config.tls) if config.tls else None
    inference = Inference(repository, in_flight, metrics, tracer, Regions(config.shared_memory))
    server = HTTPServer(
        make_app(inference, config.max_buffer_size, config.auth_token, config.body_timeout, config.docs_pages,
                 config.limits),
        max_body_size=config.max_buffer_size,
        idle_timeout=config.idle_timeout,
        ssl_context=certificates.context if certificates else None,
    )
    watching_certificates = asyncio.create_task(certificates.watch(stopping)) if certificates else None
    await server.listen(sockets)
    if "ray" in config.model_settings.get("runner", {}).values():
        # Before gRPC's threads start: starting a local Ray forks, and gRPC's fork handlers can hang it then.
        await connect_to_ray(ray_cluster, stopping)
    grpc_server = await start_grpc(config, inference, certificates) if config.grpc_port is not None else None
    await repository.start()
    started(repository)
    if board:
        board.mark(True)
    if any(runner.loaded for runner in repository.runners.values()):
        watching = asyncio.create_task(reload_on_change(repository, config.specs, stopping)) if config.reload else None
        await stopping.wait()
        if grpc_server:
            await grpc_server.drain()
        if watching:  # it stops with the same event; what it raised has been logged
            await asyncio.gather(watching, return_exceptions=True)
        await in_flight.drain(config.graceful_timeout)
        status = 0
    else:
        log.error("no model could be loaded: %s", "; ".join(r.reason for r in repository.runners.values()))
        status = EXIT_NO_MODEL

    server.stop()
    if watching_certificates:
        watching_certificates.cancel()
        await asyncio.gather(watching_certificates, return_exceptions=True)
    if grpc_server:
        await grpc_server.stop(GRPC_STOP_GRACE_SECONDS)
    await server.close_all_connections()
    await repository.stop()
    await ray_cluster.stop()
    executor.shutdown(wait=False, cancel_futures=True)
    tracing.flush()
    return status

"""The servers under test: how each is started, when it is ready, what it costs, how it stops."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import cpu

BENCH = Path(__file__).resolve().parent.parent
PEERS = BENCH / "peers"
ECHO_PLUGIN = BENCH.parent / "plugins" / "echo"
# Set (non-empty) for the peers that read it: per-request access logs on.
ACCESS_LOGS = "BENCH_ACCESS_LOGS"


@dataclass
class Server:
    label: str  # as the table prints it, with the mode it runs in
    command: list
    env: dict
    port: int
    grpc_port: Optional[int] = None  # where it serves the Open Inference Protocol over gRPC
    ready_path: str = "/v2/health/ready"
    cwd: Optional[Path] = None
    process: Optional[subprocess.Popen] = None
    log: Optional[Path] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, log: Path) -> None:
        with open(log, "wb") as sink:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=sink, stderr=subprocess.STDOUT)
        self.log = log

    def wait_ready(self, timeout: float) -> None:
        """Until the ready path answers 200; raises RuntimeError if the server exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode} at start; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not ready after {timeout:.0f} s; see {self.log}")

    def cpu_seconds(self) -> float:
        return cpu.tree_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(*paths: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    # The sample plugin would honour it and the peers would not: every server gets ONNX Runtime's default.
    env.pop("MODELHOST_ALEXNET_THREADS", None)
    return env


def modelhost(replicas: int, access_logs: bool, max_batch_size: int = 1) -> Server:
    """modelhost from this checkout: echo and the Gemm by import path, the installed sample as custom-model.

    Each gets a gRPC port of its own: its default, 8081, would let only the first of them start."""
    port, grpc_port = free_port(), free_port()
    flags = ["--replicas", str(replicas)] + (["--max_batch_size", str(max_batch_size)] if max_batch_size > 1 else [])
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port),
               "--log-level", "INFO" if access_logs else "WARNING", *flags,
               "--plugin", "echo=modelhost_echo:Echo", "--plugin", "gemm=modelhost_gemm:Gemm", "--model", "custom-model"]
    # The label names the mode and one flag, the one that sets this server apart, to fit the table.
    mode = "in-process" if replicas == 0 else "worker"
    shown = f"--max_batch_size {max_batch_size}" if max_batch_size > 1 else f"--replicas {replicas}"
    label = f"modelhost ({mode}, {shown})"
    return Server(label, command, environment(ECHO_PLUGIN, PEERS), port, grpc_port)


def kserve(python: Path, access_logs: bool) -> Server:
    """KServe's REST and gRPC servers, both on by default, in one process on one event loop."""
    port, grpc_port = free_port(), free_port()
    command = [str(python), str(PEERS / "kserve_server.py"), "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--enable_latency_logging", str(access_logs)]
    env = {**environment(PEERS), ACCESS_LOGS: "1" if access_logs else ""}
    return Server("KServe ModelServer (in-process)", command, env, port, grpc_port)


def mlserver(python: Path, workdir: Path, access_logs: bool) -> Server:
    port, grpc_port = free_port(), free_port()
    # "debug" is what turns uvicorn's access log on in MLServer; the environment overrides settings.json.
    env = {**environment(PEERS), "MLSERVER_DEBUG": str(access_logs).lower(), "MLSERVER_HTTP_PORT": str(port),
           "MLSERVER_GRPC_PORT": str(grpc_port), "MLSERVER_METRICS_PORT": str(free_port())}
    workdir.mkdir(parents=True, exist_ok=True)
    # Run from the cache: MLServer writes .envs and .metrics into its working directory.
    command = [str(python.parent / "mlserver"), "start", str(PEERS / "mlserver_repo")]
    return Server("MLServer (default: 1 inference worker)", command, env, port, grpc_port, cwd=workdir)


def bare_tornado(access_logs: bool) -> Server:
    port = free_port()
    env = {**environment(), ACCESS_LOGS: "1" if access_logs else ""}
    return Server("bare Tornado handler (1 process)", [sys.executable, str(PEERS / "bare_tornado.py"), str(port)],
                  env, port, ready_path="/")


def launch(servers: dict, logs: Path, timeout: float = 180) -> dict:
    """Start every server at once (loading AlexNet takes a while), then wait for each.

    Returns {key: why} for those that did not come up; they are stopped and removed from ``servers``.
    """
    logs.mkdir(parents=True, exist_ok=True)
    for key, server in servers.items():
        server.start(logs / f"{key}.log")
    failures = {}
    for key, server in list(servers.items()):
        try:
            server.wait_ready(timeout)
        except RuntimeError as exc:
            failures[key] = f"{server.label}: {exc}"
            server.stop()
            del servers[key]
    return failures

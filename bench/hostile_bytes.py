"""What a many-element BYTES request costs modelhost: peak memory, time, and how long health checks wait meanwhile.

    python bench/hostile_bytes.py [--requests N]

Two gRPC ModelInfer requests to the echo plugin, in the server process (--replicas 0) and from a worker
(--replicas 1): 262,144 two-byte elements (--max_bytes_elements' default, answered), and the probe of issue 34,
about 2.6 million empty elements in just under 10 MiB (refused by that limit). For each, N requests in turn while
another thread polls /v2/health/live: the server's (and its worker's) peak resident memory over its resting size,
the time per request, and the health checks' slowest and median answers. Before the limit and the vectorised
codec, the probe cost +600-700 MiB and 3-5 s, and health checks waited 1.5-2 s.
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
import requests

from modelhost.protocol import grpc_v2
from peers.servers import ECHO_PLUGIN, Server, environment, free_port

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def bodies() -> dict[str, bytes]:
    at_limit = np.empty(262_144, dtype=object)
    at_limit[:] = [b"ab"] * len(at_limit)
    probe = np.empty((10 * 2**20 - 1024) // 4, dtype=object)
    probe[:] = [b""] * len(probe)
    return {"262,144 two-byte elements": grpc_v2.encode_infer_request("echo", {"x": at_limit}).SerializeToString(),
            "2.6 million empty elements": grpc_v2.encode_infer_request("echo", {"x": probe}).SerializeToString()}


def echo_server(replicas: int) -> Server:
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--log-level", "WARNING", "--replicas", str(replicas),
               "--plugin", "echo=modelhost_echo:Echo"]
    return Server(f"{'server process' if replicas == 0 else 'worker'}", command, environment(ECHO_PLUGIN), port,
                  grpc_port)


class Watch:
    """Peak resident memory of a process tree, and health-check latencies, while a block of requests runs."""

    def __init__(self, server: Server):
        root = psutil.Process(server.process.pid)
        self.processes = [root, *root.children(recursive=True)]
        self.url = server.url + "/v2/health/live"
        self.resting = self.peak = self.rss()
        self.latencies: list[float] = []
        self.going = True
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.check_health)]

    def rss(self) -> int:
        return sum(process.memory_info().rss for process in self.processes)

    def sample(self) -> None:
        while self.going:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.003)

    def check_health(self) -> None:
        while self.going:
            started = time.monotonic()
            requests.get(self.url, timeout=60)
            self.latencies.append(time.monotonic() - started)
            time.sleep(0.005)

    def __enter__(self) -> "Watch":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.going = False
        for thread in self.threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    print(f"$ python bench/hostile_bytes.py --requests {args.requests}")
    print(f"{'mode':15}{'request':28}{'answer':18}{'ms/request':>11}{'peak MiB':>10}{'health max ms':>15}"
          f"{'health p50 ms':>15}")
    for replicas in (0, 1):
        server = echo_server(replicas)
        with tempfile.TemporaryDirectory() as logs:
            server.start(Path(logs) / "server.log")
            try:
                server.wait_ready(60)
                channel = grpc.insecure_channel(server.grpc_address, options=[("grpc.max_send_message_length", -1)])
                call = channel.unary_unary(MODEL_INFER)
                for name, body in bodies().items():
                    with Watch(server) as watch:
                        started = time.monotonic()
                        for _ in range(args.requests):
                            try:
                                call(body, timeout=120)
                                answer = "OK"
                            except grpc.RpcError as error:
                                answer = error.code().name
                        seconds = (time.monotonic() - started) / args.requests
                    latencies = sorted(watch.latencies)
                    print(f"{server.label:15}{name:28}{answer:18}{seconds * 1000:11.0f}"
                          f"{(watch.peak - watch.resting) / 2**20:10.1f}{latencies[-1] * 1000:15.0f}"
                          f"{latencies[len(latencies) // 2] * 1000:15.0f}")
                channel.close()
            finally:
                server.stop()


if __name__ == "__main__":
    main()

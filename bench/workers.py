"""Worker processes: how replicas scale a CPU-bound model, and what the process hop costs.

    python bench/workers.py            # from the repository root, with modelhost and plugins/echo importable

Prints requests/s of a CPU-bound plugin with 1 and 2 replicas under 4 concurrent
clients, and the median latency of echo in the server process against one
worker (two servers side by side, requests interleaved so that the machine's
drift hits both alike), for a small V1 request and a 600 KB FP32 tensor over V2
binary: the difference is the per-request cost of the hop.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent


def start(*args, port=8599):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT / "plugins" / "echo")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
         "--grpc_port", "0", "--log-level", "WARNING", *args], env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not become ready")


def stop(process):
    process.terminate()
    process.wait(30)


def throughput(replicas: int, clients: int = 4, per_client: int = 25) -> float:
    server = start("--replicas", str(replicas), "--plugin", "bench_plugins:Burn")
    try:
        def client():
            with requests.Session() as session:
                for _ in range(per_client):
                    session.post("http://127.0.0.1:8599/v1/models/Burn:predict", data=b'{"instances": [1]}').raise_for_status()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return clients * per_client / (time.perf_counter() - began)
    finally:
        stop(server)


def hop_costs(count: int = 400) -> dict:
    """Median latency of echo in the server process and in one worker, requests interleaved between the two."""
    ports = {"in-process": 8598, "1 worker": 8599}
    servers = [start("--replicas", str(replicas), "--plugin", "echo=modelhost_echo:Echo", port=port)
               for replicas, port in zip((0, 1), ports.values())]
    tensor = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    header = json.dumps({
        "inputs": [{"name": "x", "shape": list(tensor.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    cases = {
        "small V1": ("/v1/models/echo:predict", b'{"instances": [[1, 2, 3, 4]]}', {}),
        "600 KB V2 binary": ("/v2/models/echo/infer", header + tensor.tobytes(),
                             {"Inference-Header-Content-Length": str(len(header))}),
    }
    try:
        results = {}
        with requests.Session() as session:
            for case, (path, body, headers) in cases.items():
                times = {mode: [] for mode in ports}
                for _ in range(count):
                    for mode, port in ports.items():
                        began = time.perf_counter()
                        session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers).raise_for_status()
                        times[mode].append(time.perf_counter() - began)
                results[case] = {mode: statistics.median(t[count // 10:]) * 1000 for mode, t in times.items()}
        return results
    finally:
        for server in servers:
            stop(server)


def main():
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    one, two = throughput(1), throughput(2)
    print(f"CPU-bound plugin, 4 clients: 1 replica {one:.1f} req/s, 2 replicas {two:.1f} req/s, ratio {two / one:.2f}x")
    print(f"{'echo, median latency':<24}{'in-process':>12}{'1 worker':>12}{'hop cost':>12}")
    for case, median in hop_costs().items():
        hop = median["1 worker"] - median["in-process"]
        print(f"{case:<24}{median['in-process']:>10.3f}ms{median['1 worker']:>10.3f}ms{hop:>10.3f}ms")


if __name__ == "__main__":
    main()

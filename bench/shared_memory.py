"""Triton's system shared memory against tensors in the request: round trip and server CPU per request.

    python bench/shared_memory.py            # from the repository root, with modelhost and tritonclient installed
    python bench/shared_memory.py --quick    # fewer requests, for a look

An FP32 tensor of 1, 8 and 64 MB echoed (the plugin returns its input), one client on this machine, one
request at a time, through tritonclient as Triton's examples use it: binary HTTP (input and output as binary
data), gRPC (raw contents), and system shared memory (input read from a region, output written into another,
over HTTP). Each in the server process (--replicas 0) and from a worker process (--replicas 1). Per cell:
the median round trip, and the server's CPU per request (the server and its workers, from /proc).

Targets (issue 38): shared memory at least 5x faster than binary HTTP from a worker at 64 MB; the server's
CPU per request through shared memory within 2x from 1 MB to 64 MB. The worker rows against the in-process
rows over binary HTTP are what the pipe to a worker costs: the measure of whether the server's own transport
to its workers should be shared memory too.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import cpu  # noqa: E402
from peers.servers import BENCH, Server, environment, free_port  # noqa: E402

MB = 1 << 20
SIZES_MB = (1, 8, 64)
TRANSPORTS = ("binary HTTP", "gRPC raw", "shared memory")
LIMIT = 300 * MB  # bodies and gRPC messages of 64 MB and their JSON header


def server(replicas: int) -> Server:
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--log-level", "WARNING", "--replicas", str(replicas),
               "--max_buffer_size", str(LIMIT), "--grpc_max_send_message_length", str(LIMIT),
               "--plugin", "echo=bench_plugins:Identity"]
    mode = "in-process" if replicas == 0 else "worker"
    return Server(f"modelhost ({mode})", command, environment(BENCH), port, grpc_port)


class Cell:
    """One transport and size against one server: a way to send the tensor and check what came back."""

    def __init__(self, served: Server, transport: str, data: np.ndarray, regions: list):
        self.transport, self.data = transport, data
        if transport == "gRPC raw":
            self.client = grpcclient.InferenceServerClient(served.grpc_address)
            self.triton = grpcclient
        else:
            self.client = httpclient.InferenceServerClient(served.url.split("//")[1], connection_timeout=120,
                                                           network_timeout=120)
            self.triton = httpclient
        if transport == "shared memory":
            self.client.unregister_system_shared_memory()
            for name, handle in regions:
                self.client.register_system_shared_memory(name, f"/bench-{name}", data.nbytes)
            self.output_handle = regions[1][1]
            shm.set_shared_memory_region(regions[0][1], [data])

    def once(self) -> np.ndarray:
        tensor = self.triton.InferInput("x", list(self.data.shape), "FP32")
        output = self.triton.InferRequestedOutput("x", **({"binary_data": True} if self.triton is httpclient else {}))
        if self.transport == "shared memory":
            tensor.set_shared_memory("bench-in", self.data.nbytes)
            output.set_shared_memory("bench-out", self.data.nbytes)
        else:
            tensor.set_data_from_numpy(self.data, **({"binary_data": True} if self.triton is httpclient else {}))
        result = self.client.infer("echo", [tensor], outputs=[output])
        if self.transport == "shared memory":
            return shm.get_contents_as_numpy(self.output_handle, np.float32, list(self.data.shape))
        return result.as_numpy("x")


def measure(served: Server, transport: str, size_mb: int, requests: int, regions: list) -> dict:
    data = np.random.default_rng(size_mb).random(size_mb * MB // 4, dtype=np.float32)
    if transport == "shared memory":
        shm.set_shared_memory_region(regions[0][1], [data])
    cell = Cell(served, transport, data, regions)
    if not np.array_equal(cell.once(), data):
        raise RuntimeError(f"{served.label}, {transport}, {size_mb} MB: the echo differs from the tensor sent")
    times = []
    processes = [served.process.pid, *children(served.process.pid)]  # the server, and its worker if any
    before = [cpu.running_seconds(pid) for pid in processes]
    for _ in range(requests):
        began = time.perf_counter()
        cell.once()
        times.append(time.perf_counter() - began)
    server, *workers = [(cpu.running_seconds(pid) - then) / requests for pid, then in zip(processes, before)]
    model = sum(workers)
    return {"ms": statistics.median(times) * 1e3, "cpu_ms": server * 1e3, "model_ms": model * 1e3}


def children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few requests a cell")
    args = parser.parse_args()
    command = "python bench/shared_memory.py" + (" --quick" if args.quick else "")
    largest = max(SIZES_MB) * MB
    regions = [(name, shm.create_shared_memory_region(name, f"/bench-{name}", largest))
               for name in ("bench-in", "bench-out")]
    results: dict = {}
    logs = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    try:
        for replicas in (0, 1):
            served = server(replicas)
            served.start(logs / f"replicas-{replicas}.log")
            served.wait_ready(120)
            try:
                for size_mb in SIZES_MB:
                    requests = (3 if args.quick else 20) if size_mb == 64 else (10 if args.quick else 100)
                    for transport in TRANSPORTS:
                        cell = measure(served, transport, size_mb, requests, regions)
                        results[served.label, transport, size_mb] = cell
                        print(f"{served.label:<24}{transport:<16}{size_mb:>4} MB  {cell['ms']:9.2f} ms  "
                              f"server CPU {cell['cpu_ms']:8.2f} ms", flush=True)
            finally:
                served.stop()
    finally:
        for _, handle in regions:
            shm.destroy_shared_memory_region(handle)
    print_table(command, results)
    return 0


def print_table(command: str, results: dict) -> None:
    print(f"\n{command}   (cores: {os.cpu_count()}, one request at a time; medians of the round trip, and CPU per "
          "request: the server process's, and a worker's where the model runs in one)")
    print(f"{'server':<24}{'transport':<16}" + "".join(f"{f'{size} MB ms':>11}{'server':>8}{'worker':>8}"
                                                     for size in SIZES_MB))
    for label in ("modelhost (in-process)", "modelhost (worker)"):
        for transport in TRANSPORTS:
            cells = [results[label, transport, size] for size in SIZES_MB]
            print(f"{label:<24}{transport:<16}" + "".join(
                f"{cell['ms']:11.2f}{cell['cpu_ms']:8.1f}{cell['model_ms'] if 'worker' in label else 0:8.1f}"
                for cell in cells))
    largest = max(SIZES_MB)
    for label in ("modelhost (in-process)", "modelhost (worker)"):
        shared = results[label, "shared memory", largest]
        print(f"{label}: shared memory {results[label, 'binary HTTP', largest]['ms'] / shared['ms']:.1f}x faster "
              f"than binary HTTP, {results[label, 'gRPC raw', largest]['ms'] / shared['ms']:.1f}x faster than gRPC "
              f"at {largest} MB; the server process's CPU per request at {largest} MB is "
              f"{shared['cpu_ms'] / results[label, 'shared memory', 1]['cpu_ms']:.2f}x that at 1 MB")
    worker = {size: results["modelhost (worker)", transport, size] for transport in ["shared memory"]
              for size in SIZES_MB}
    faster = results["modelhost (worker)", "binary HTTP", largest]["ms"] / worker[largest]["ms"]
    growth = worker[largest]["cpu_ms"] / worker[1]["cpu_ms"]
    print(f"targets, from a worker: at {largest} MB at least 5x binary HTTP: {faster:.1f}x, "
          f"{'met' if faster >= 5 else 'NOT met'}; the server's CPU per request within 2x from 1 to {largest} MB: "
          f"{growth:.2f}x, {'met' if growth <= 2 else 'NOT met'}")
    pipe = results["modelhost (worker)", "binary HTTP", largest]["ms"] - \
        results["modelhost (in-process)", "binary HTTP", largest]["ms"]
    print(f"the pipe to a worker and back, at {largest} MB over binary HTTP: {pipe:.1f} ms a request")

if __name__ == "__main__":
    sys.exit(main())

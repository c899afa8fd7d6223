"""Triton's system shared memory against tensors in the request: round trip and server CPU per request.

    python bench/shared_memory.py            # from the repository root, with modelhost and tritonclient installed
    python bench/shared_memory.py --quick    # fewer requests, for a look

An FP32 tensor of 1, 8 and 64 MB echoed (the plugin returns its input), one client on this machine, one
request at a time, through tritonclient as Triton's examples use it: binary HTTP (input and output as binary
data), gRPC (raw contents), and system shared memory (input read from a region, output written into another,
over HTTP). Each in the server process (--replicas 0) and from a worker process (--replicas 1). Per cell:
the median round trip, and the server's CPU per request (the server and its workers, from /proc).

Targets (issue 38): shared memory at least 5x faster than binary HTTP from a worker at 64 MB; the server's
CPU per request through shared memory within 2x from 1 MB to 64 MB. The server touches no byte of a tensor in
shared memory, but its CPU per request grows with how long it waits for its worker, whatever for (a model that
sleeps 30 ms costs it as much as a 64 MB copy: its caches go cold meanwhile). So two controls, from a worker:
the input alone in shared memory at each size (a model that answers one number), and a 1 MB echo whose model
waits as long as the 64 MB echo takes more; the target is judged on both. In the server process the server's
CPU is the model's too, the output's copy into the client's region among it. The worker rows against the
in-process rows over binary HTTP are what the channel to a worker costs (its tensors of 8 MiB or more go
through shared memory of the server's own: runtime/spill.py, bench/worker_channel.py).
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
               "--plugin", "echo=bench_plugins:Identity", "--plugin", "nothing=bench_plugins:Nothing"]
    mode = "in-process" if replicas == 0 else "worker"
    return Server(f"modelhost ({mode})", command, environment(BENCH), port, grpc_port)


class Cell:
    """One transport and size against one server: a way to send the tensor and check what came back."""

    def __init__(self, served: Server, transport: str, data: np.ndarray, regions: list, model: str = "echo",
                 wait_ms: float = 0):
        self.transport, self.data, self.model, self.wait_ms = transport, data, model, wait_ms
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
        if self.model != "echo":  # its answer is one small output, in the response
            return self.client.infer(self.model, [tensor]).as_numpy("output-0")
        result = self.client.infer("echo", [tensor], outputs=[output], parameters={"wait_ms": self.wait_ms})
        if self.transport == "shared memory":
            return shm.get_contents_as_numpy(self.output_handle, np.float32, list(self.data.shape))
        return result.as_numpy("x")


def measure(served: Server, transport: str, size_mb: int, requests: int, regions: list, model: str = "echo",
            wait_ms: float = 0) -> dict:
    data = np.random.default_rng(size_mb).random(size_mb * MB // 4, dtype=np.float32).reshape(1, -1)
    cell = Cell(served, transport, data, regions, model, wait_ms)
    if model == "echo" and not np.array_equal(cell.once(), data):
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


def controls(served: Server, regions: list, results: dict, quick: bool) -> dict:
    """From a worker, through shared memory: the input alone (a model that answers one number), and a 1 MB echo
    whose model waits as long as the largest echo takes more than the 1 MB one. The server's CPU per request
    grows with how long it waits for its worker, whatever the wait is for (its caches go cold meanwhile): the
    second tells that apart from the tensor's size."""
    largest, requests = max(SIZES_MB), 3 if quick else 20
    measured = {(served.label, "input only", size): measure(served, "shared memory", size, requests, regions, "nothing")
                for size in SIZES_MB}
    echo = {size: results[served.label, "shared memory", size]["ms"] for size in (1, largest)}
    measured[served.label, "1 MB, paced", largest] = measure(served, "shared memory", 1, requests, regions,
                                                            wait_ms=echo[largest] - echo[1])
    return measured


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
                if replicas:
                    results.update(controls(served, regions, results, args.quick))
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
    worker = "modelhost (worker)"
    inputs = {size: results[worker, "input only", size] for size in SIZES_MB}
    print(f"{worker:<24}{'input only':<16}" + "".join(
        f"{inputs[size]['ms']:11.2f}{inputs[size]['cpu_ms']:8.1f}{inputs[size]['model_ms']:8.1f}" for size in SIZES_MB))
    paced = results[worker, "1 MB, paced", largest]
    label = f"1 MB echo, waiting as long as the {largest} MB one"
    print(f"{worker:<24}{label:<52}{paced['ms']:11.2f}{paced['cpu_ms']:8.1f}{paced['model_ms']:8.1f}")
    echo = results[worker, "shared memory", largest]
    faster = results[worker, "binary HTTP", largest]["ms"] / echo["ms"]
    alone = inputs[largest]["cpu_ms"] / inputs[1]["cpu_ms"]
    against_paced = echo["cpu_ms"] / paced["cpu_ms"]
    print(f"targets, from a worker: at {largest} MB at least 5x binary HTTP: {faster:.1f}x, "
          f"{'met' if faster >= 5 else 'NOT met'}; the server's CPU per request within 2x from 1 to {largest} MB: "
          f"input only {alone:.2f}x, the {largest} MB echo against a 1 MB echo as long {against_paced:.2f}x, "
          f"{'met' if max(alone, against_paced) <= 2 else 'NOT met'}")
    pipe = results["modelhost (worker)", "binary HTTP", largest]["ms"] - \
        results["modelhost (in-process)", "binary HTTP", largest]["ms"]
    print(f"the pipe to a worker and back, at {largest} MB over binary HTTP: {pipe:.1f} ms a request")

if __name__ == "__main__":
    sys.exit(main())

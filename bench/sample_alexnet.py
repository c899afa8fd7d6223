"""Benchmark the sample AlexNet plugin (custom-model): cold start, memory, latency.

Usage, from the repository root, with the sample installed (pip install ./sample_alexnet_plugin):

    python bench/sample_alexnet.py [--starts 3] [--requests 100]

Prints:
  * the time to build and write the network, and its size;
  * cold start: from launching ``modelhost serve --model custom-model`` to the
    first 200 from /v2/health/ready, with an empty cache directory (the network
    is built and written first) and with the network already cached;
  * resident memory (VmRSS) once ready, the server and its worker process together, for both;
  * single-image latency of V1 requests with sample_alexnet_plugin/input.json
    over HTTP (one keep-alive connection), against ``session.run`` alone on the
    same preprocessed tensor in this process, and the plugin's preprocessing alone.
It also times building the network in process. Caches live in a temporary
directory: nothing is read from or left in ~/.cache.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from modelhost import InferenceRequest
from modelhost_alexnet import AlexNet, network

ROOT = Path(__file__).resolve().parent.parent
GUIDE_REQUEST = json.loads((ROOT / "sample_alexnet_plugin" / "input.json").read_text())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(cache: Path) -> tuple[subprocess.Popen, str, float]:
    """A server on a free port, and the seconds it took from launch to ready."""
    port = free_port()
    env = {**os.environ, "MODELHOST_CACHE_DIR": str(cache)}
    env.pop("MODELHOST_ALEXNET_MODEL", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
         "--grpc_port", "0", "--model", "custom-model", "--log-level", "WARNING"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return process, url, time.perf_counter() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.01)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (the model runs in a worker process)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            own = int(line.split()[1]) / 1024
            break
    else:
        raise RuntimeError("no VmRSS")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(rss_mib(int(child)) for child in children)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def timed(call, count: int, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return np.array(seconds) * 1000


def report(label: str, values, unit: str) -> None:
    values = np.asarray(values)
    print(f"  {label:<34} median {np.median(values):7.1f} {unit}   p99 {np.percentile(values, 99):7.1f} {unit}"
          f"   (n={len(values)})")


def report_each(label: str, values, unit: str) -> None:
    each = ", ".join(f"{value:.0f}" for value in values)
    print(f"  {label:<34} median {np.median(values):7.0f} {unit}   each: {each}")


def cold_starts(root: Path, starts: int) -> Path:
    """Measure cold starts; returns a cache directory holding the built network."""
    built, cached, built_rss, cached_rss = [], [], [], []
    for attempt in range(starts):
        cache = root / f"cache-{attempt}"
        for times, memory in ((built, built_rss), (cached, cached_rss)):
            process, _, elapsed = start_server(cache)
            times.append(elapsed * 1000)
            memory.append(rss_mib(process.pid))
            stop(process)
    size = (cache / network.CACHE_NAME).stat().st_size
    print(f"cold start, launch to /v2/health/ready ({starts} each; network file {size / 1e6:.1f} MB):")
    report_each("built weights (empty cache dir)", built, "ms")
    report_each("cached weights", cached, "ms")
    print("RSS once ready (server + worker):")
    report_each("after building", built_rss, "MiB")
    report_each("from the cache", cached_rss, "MiB")
    return cache


def latencies(cache: Path, count: int) -> None:
    process, url, _ = start_server(cache)
    plugin = AlexNet()
    request = InferenceRequest("v1", instances=GUIDE_REQUEST["instances"])
    tensor = plugin.preprocess(request)
    session = network.open_session(cache / network.CACHE_NAME)
    http = requests.Session()
    endpoint = f"{url}/v1/models/custom-model:predict"
    body = json.dumps(GUIDE_REQUEST)

    def post():
        response = http.post(endpoint, data=body)
        response.raise_for_status()

    print(f"single-image latency ({count} runs after 5 warm-up runs):")
    try:
        report("HTTP V1 predict, input.json", timed(post, count), "ms")
    finally:
        stop(process)
    report("session.run alone (this process)", timed(lambda: session.run(None, {"input": tensor}), count), "ms")
    report("plugin preprocess alone", timed(lambda: plugin.preprocess(request), count), "ms")


def build_time(root: Path) -> None:
    """Building and writing the network in this process, without the server around it."""
    os.environ["MODELHOST_CACHE_DIR"] = str(root / "build")
    started = time.perf_counter()
    path = network.model_path()
    print(f"network.model_path() building into an empty cache: {time.perf_counter() - started:.2f} s, "
          f"{path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="cold starts of each kind (default: 3)")
    parser.add_argument("--requests", type=int, default=100, help="timed requests (default: 100)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, onnxruntime default intra-op threads, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="modelhost-bench-") as root:
        build_time(Path(root))
        latencies(cold_starts(Path(root), args.starts), args.requests)


if __name__ == "__main__":
    main()

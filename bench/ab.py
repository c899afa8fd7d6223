"""An A/B test of server commands: interleaved wrk runs, and the server CPU each request cost.

    python bench/ab.py [--path P] [--body FILE] [-c N] [--rounds R] [--seconds S] NAME='COMMAND' ...

Each COMMAND starts one server, ``{port}`` standing for its port; all of them
run side by side, and each round loads each in turn, so that the machine's
drift (±15% within minutes on a shared 2-core machine) hits them alike. Prints
each run, then per server the median requests/s, p99 and server CPU per
request (its process tree's, from /proc: the steadier figure on a noisy
machine), and the ratio to the first. For example, this checkout against the
bare Tornado handler on the echo V1 body (compare.py writes the body files):

    python bench/ab.py \\
      bare='python bench/peers/bare_tornado.py {port}' \\
      modelhost='python -m modelhost serve --host 127.0.0.1 --http_port {port} --grpc_port 0 --replicas 0
                 --log-level WARNING --plugin echo=modelhost_echo:Echo'

with ``plugins/echo`` on ``PYTHONPATH``. Another checkout of modelhost runs
with its own ``host/`` first on ``PYTHONPATH`` in the command (``env PYTHONPATH=...``).
Servers run side by side: give each modelhost ``--grpc_port 0`` (or
``--enable_grpc false``), or they would all ask for gRPC's default port, 8081.
"""

import argparse
import shlex
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from peers import cpu, servers, wrk

BENCH = Path(__file__).resolve().parent


def start(command: str, path: str, body: bytes, headers: dict) -> tuple[subprocess.Popen, int]:
    """Start a server; it is ready once the request under test answers 200."""
    port = servers.free_port()
    process = subprocess.Popen(shlex.split(command.replace("{port}", str(port))), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command!r} exited with {process.returncode}")
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers)
            with urllib.request.urlopen(request, timeout=2):
                return process, port
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{command!r} was not ready after 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--path", default="/v1/models/echo:predict")
    parser.add_argument("--body", type=Path, default=BENCH / ".cache" / "bodies" / "echo-v1.json")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'; JSON's Content-Type if none")
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    headers = dict(line.split(": ", 1) for line in args.header) or {"Content-Type": "application/json"}

    started = {}
    try:
        for spec in args.servers:
            name, _, command = spec.partition("=")
            started[name] = start(command, args.path, args.body.read_bytes(), headers)
        results = {name: [] for name in started}
        for round_number in range(1, args.rounds + 1):
            for name, (process, port) in started.items():
                before = cpu.tree_seconds(process.pid)
                run = wrk.run(f"http://127.0.0.1:{port}{args.path}", args.body, headers, args.connections, args.seconds)
                cpu_us = (cpu.tree_seconds(process.pid) - before) / max(run.requests, 1) * 1e6
                results[name].append((run.requests_per_s, run.p99_ms, cpu_us))
                print(f"round {round_number} {name:<16} {run.requests_per_s:>8,.0f} req/s  p99 {run.p99_ms:6.2f} ms  "
                      f"{cpu_us:6.1f} us CPU/request  errors {run.errors}", flush=True)
    finally:
        for process, _ in started.values():
            process.terminate()
            process.wait()

    print(f"\nmedians over {args.rounds} rounds, c={args.connections}, {args.path}:")
    first = statistics.median(rate for rate, _, _ in next(iter(results.values())))
    for name, runs in results.items():
        rate, p99, cpu_us = (statistics.median(column) for column in zip(*runs))
        print(f"  {name:<16} {rate:>8,.0f} req/s  p99 {p99:6.2f} ms  {cpu_us:6.1f} us CPU/request  {rate / first:.3f}x")


if __name__ == "__main__":
    sys.exit(main())

"""The transformer hop (issue 19): echo through a transformer to a predictor, against the predictor alone,
modelhost's pair against KServe 0.21's pair, under wrk at c = 1 and c = 64.

    python bench/transformer_hop.py              # 3 interleaved runs of 4 s per row and c (about 3 minutes)
    python bench/transformer_hop.py --quick      # 1 run of 2 s per row and c (about 1 minute)
    python bench/transformer_hop.py --variants   # also the modelhost transformer queued, in a worker, over gRPC

Options: --runs N and --seconds S override either mode; --cache DIR (default bench/.cache) holds KServe's
virtual environment (installed there on first use, as compare.py does: peers/environment.py) and the
servers' logs. Run it from the repository root with modelhost installed.

Servers, each started once on 127.0.0.1 (KServe binds every interface; it is asked on 127.0.0.1), on free
ports, per-request logs off (modelhost --log-level WARNING; KServe as in compare.py):

- modelhost predictor: ``modelhost serve --replicas 0`` with the echo plugin (``plugins/echo``, inline);
- modelhost transformer: ``--replicas 0 --plugin echo=transformer_plugins:PassThrough --predictor_host
  127.0.0.1:PORT --predictor_protocol v1`` (and a second one with ``v2``): trivial pre- and postprocess run
  inline on the event loop, the host's own ``predict`` sending each batch to the predictor (aiohttp, pooled
  keep-alive connections). ``--variants`` adds the same hooks without ``inline`` (queued, hooks on threads),
  ``async def`` hooks in a worker process (``--replicas 1``), and the hop over gRPC (``grpc-v2``);
- KServe 0.21 predictor: compare.py's ``kserve.Model`` echo (``peers/kserve_hop.py --role predictor``);
- KServe 0.21 transformer: a ``kserve.Model`` with trivial pre- and postprocess and KServe's own
  ``predict`` (httpx) to ``--predictor_host`` over ``--predictor_protocol v1`` (``--role transformer``).

Every row POSTs compare.py's echo V1 body, ``{"instances": [[16 floats]]}``, to /v1/models/echo:predict of
the row's front server; each answer is checked once first (the predictions must equal the instances).
wrk with one thread; a 1 s warm-up per row; then rounds, each row once per c in a round, its order rotated
from round to round, 0.5 s of quiet before each run; the table gives medians. CPU ms/req is the CPU of
every server on the row's path (transformer and predictor) over the requests served.
"""

import argparse
import json
import shlex
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peers import cpu, environment, servers as launcher, table, wrk
from peers.cases import JSON, X

BENCH = Path(__file__).resolve().parent
PATH = "/v1/models/echo:predict"
CONCURRENCIES = (1, 64)
SETTLE = 0.5  # seconds of quiet before each run
TARGET = 1.5  # issue 19: the modelhost pair at least 1.5x the KServe pair's requests/s at c=64


@dataclass
class Target:
    key: str
    label: str
    path: list  # the servers a request crosses, the one wrk talks to first


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per row and c")
    parser.add_argument("--variants", action="store_true",
                        help="also the modelhost transformer queued (no inline), in a worker, and over gRPC")
    parser.add_argument("--runs", type=int, help="interleaved runs per row (default: 3; --quick: 1)")
    parser.add_argument("--seconds", type=int, help="whole seconds per wrk run (default: 4; --quick: 2)")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache",
                        help="KServe's virtual environment and the servers' logs (default: bench/.cache)")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.seconds = args.seconds or (2 if args.quick else 4)
    return args


def modelhost(label: str, *flags: str) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--log-level", "WARNING", *flags]
    return launcher.Server(label, command, launcher.environment(launcher.ECHO_PLUGIN, launcher.PEERS), port, grpc_port)


def transformer(label: str, plugin: str, predictor: str, protocol: str, replicas: int = 0) -> launcher.Server:
    return modelhost(label, "--replicas", str(replicas), "--plugin", f"echo=transformer_plugins:{plugin}",
                     "--predictor_host", predictor, "--predictor_protocol", protocol)


def kserve(python: Path, label: str, role: str, *flags: str) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [str(python), str(launcher.PEERS / "kserve_hop.py"), "--role", role, "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--enable_latency_logging", "False", *flags]
    env = {**launcher.environment(launcher.PEERS), launcher.ACCESS_LOGS: ""}
    return launcher.Server(label, command, env, port, grpc_port)


def build(kserve_python, variants: bool) -> tuple[dict, list]:
    """The servers by key, and the rows: each a path through them."""
    mh = modelhost("modelhost predictor (--replicas 0, echo inline)", "--replicas", "0",
                   "--plugin", "echo=modelhost_echo:Echo")
    rest, grpc_address = f"127.0.0.1:{mh.port}", mh.grpc_address
    running = {"mh": mh, "mh-t": transformer("modelhost transformer, V1 hop", "PassThrough", rest, "v1"),
               "mh-t-v2": transformer("modelhost transformer, V2 hop", "PassThrough", rest, "v2")}
    targets = [Target("mh", "modelhost predictor alone", ["mh"]),
               Target("mh-pair", "modelhost pair, V1 hop (in-process, inline)", ["mh-t", "mh"]),
               Target("mh-pair-v2", "modelhost pair, V2 hop (in-process, inline)", ["mh-t-v2", "mh"])]
    if variants:
        running["mh-t-queued"] = transformer("modelhost transformer, queued", "PassThroughQueued", rest, "v1")
        running["mh-t-worker"] = transformer("modelhost transformer, worker", "PassThroughAsync", rest, "v1", 1)
        running["mh-t-grpc"] = transformer("modelhost transformer, gRPC hop", "PassThrough", grpc_address, "grpc-v2")
        targets += [Target("mh-pair-queued", "modelhost pair, V1, in-process, queued", ["mh-t-queued", "mh"]),
                    Target("mh-pair-worker", "modelhost pair, V1, worker (--replicas 1)", ["mh-t-worker", "mh"]),
                    Target("mh-pair-grpc", "modelhost pair, gRPC hop (in-process, inline)", ["mh-t-grpc", "mh"])]
    if kserve_python:
        ks = kserve(kserve_python, "KServe 0.21 predictor (echo)", "predictor")
        running["ks"] = ks
        running["ks-t"] = kserve(kserve_python, "KServe 0.21 transformer, V1 hop", "transformer",
                                 "--predictor_host", f"127.0.0.1:{ks.port}", "--predictor_protocol", "v1")
        targets += [Target("ks", "KServe predictor alone", ["ks"]),
                    Target("ks-pair", "KServe pair, V1 hop", ["ks-t", "ks"])]
    return running, targets


def preflight(running: dict, targets: list, body: bytes) -> dict:
    """One request to each row's front server; {row key: why} for those whose predictions are not the instances."""
    broken = {}
    for target in targets:
        front = running.get(target.path[0])
        if front is None or any(key not in running for key in target.path):
            broken[target.key] = "a server on its path did not start"
            continue
        try:
            request = urllib.request.Request(front.url + PATH, data=body, headers=JSON)
            with urllib.request.urlopen(request, timeout=30) as response:
                predictions = json.loads(response.read())["predictions"]
            if not np.array_equal(np.asarray(predictions, dtype=np.float32), X):
                broken[target.key] = f"answered {predictions!r}, not the instances"
        except (OSError, ValueError, KeyError) as exc:  # refused, an HTTP error status, not JSON, no predictions
            broken[target.key] = f"failed: {exc}"
        print(f"  {target.label}: {'!! ' + broken[target.key] if target.key in broken else 'predictions == instances'}")
    return broken


def one_run(running: dict, target: Target, body: Path, concurrency: int, seconds: int) -> table.Run:
    def spent() -> float:
        return sum(running[key].cpu_seconds() for key in target.path)

    servers_before, busy_before = spent(), cpu.machine_busy_seconds()
    result = wrk.run(running[target.path[0]].url + PATH, body, JSON, concurrency, seconds)
    servers_cpu = spent() - servers_before
    others = cpu.machine_busy_seconds() - busy_before - servers_cpu - result.loader_cpu_s
    return table.Run(result, servers_cpu, max(others, 0.0))


def measure(running: dict, targets: list, body: Path, runs: int, seconds: int) -> dict:
    print(f"\n{len(targets)} rows x {len(CONCURRENCIES)} c x {runs} runs x {seconds} s, interleaved (about "
          f"{len(targets) * len(CONCURRENCIES) * runs * (seconds + SETTLE + 0.2) / 60:.0f} min), "
          "after a 1 s warm-up of each row", flush=True)
    for target in targets:
        wrk.run(running[target.path[0]].url + PATH, body, JSON, 8, 1)
    rows = {}
    for round_ in range(runs):
        print(f"  round {round_ + 1}/{runs}", flush=True)
        for concurrency in CONCURRENCIES:
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                time.sleep(SETTLE)
                run = one_run(running, target, body, concurrency, seconds)
                rows.setdefault((target.key, concurrency), table.Row([])).runs.append(run)
    return rows


def render(targets: list, rows: dict, broken: dict) -> list[str]:
    lines = [f"  {'row':<47}{'c':>4}{'req/s':>9}{'±%':>5}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"]
    for concurrency in CONCURRENCIES:
        for target in targets:
            row = rows.get((target.key, concurrency))
            if row is None:
                lines.append(f"  {target.label:<47}{concurrency:>4}   not run: {broken.get(target.key, 'no runs')}")
                continue
            rates = [run.result.requests_per_s for run in row.runs]
            spread = 100 * (max(rates) - min(rates)) / row.rps if row.rps else 0
            per_request = statistics.median(1000 * run.server_cpu_s / max(run.result.requests, 1) for run in row.runs)
            errors = sum(run.result.errors for run in row.runs)
            lines.append(f"  {target.label:<47}{concurrency:>4}{row.rps:>9.0f}{spread:>5.0f}{row.median('p50_ms'):>9.2f}"
                         f"{row.median('p99_ms'):>9.2f}{per_request:>12.2f}" + (f"  {errors} errors!" if errors else ""))
    return lines


def ratios(rows: dict) -> list[str]:
    lines = []
    for title, mine, theirs in (("modelhost pair / KServe pair (issue 19: >= 1.5x at c=64)", "mh-pair", "ks-pair"),
                                ("modelhost pair, V2 hop / KServe pair", "mh-pair-v2", "ks-pair"),
                                ("modelhost pair / modelhost predictor alone", "mh-pair", "mh"),
                                ("KServe pair / KServe predictor alone", "ks-pair", "ks"),
                                ("modelhost predictor alone / KServe predictor alone", "mh", "ks")):
        cells = [f"c={c}: {rows[mine, c].rps / rows[theirs, c].rps:.2f}x" for c in CONCURRENCIES
                 if (mine, c) in rows and (theirs, c) in rows and rows[theirs, c].rps]
        if cells:
            lines.append(f"{title:<58}{', '.join(cells)}")
    if ("mh-pair", 64) in rows and ("ks-pair", 64) in rows:
        ratio = rows["mh-pair", 64].rps / rows["ks-pair", 64].rps
        lines.append(f"target (modelhost pair >= {TARGET}x KServe pair at c=64): {'met' if ratio >= TARGET else 'NOT met'}"
                     f" ({ratio:.2f}x)")
    return lines


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    print("command: " + shlex.join(["python", "bench/transformer_hop.py", *sys.argv[1:]]))
    cache = environment.prepare_cache(args.cache)
    environment.ensure_tools()
    try:
        kserve_python = environment.venv_python(cache, "kserve")
    except RuntimeError as exc:
        print(f"!! KServe could not be installed, going on without it: {exc}")
        kserve_python = None
    print("\n".join(["", time.strftime("%Y-%m-%d %H:%M %Z"),
                     *environment.versions({"kserve": kserve_python} if kserve_python else {}),
                     "per-request logging off: modelhost --log-level WARNING; KServe --enable_latency_logging False "
                     "with its uvicorn.access, kserve.trace and kserve loggers at WARNING"]))
    body = cache / "bodies" / "echo-v1.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_bytes(json.dumps({"instances": X.tolist()}).encode())

    running, targets = build(kserve_python, args.variants)
    print(f"\nstarting the servers (logs in {cache / 'logs' / 'hop-*.log'}):")
    for server in running.values():
        print(f"  {server.label}: {shlex.join(server.command)}")
    logs = {f"hop-{key}": server for key, server in running.items()}
    failed = launcher.launch(logs, cache / "logs")
    running = {key.removeprefix("hop-"): server for key, server in logs.items()}
    for why in failed.values():
        print(f"!! {why}")
    try:
        print(f"\nchecking each row once: POST {PATH}, {body.stat().st_size} bytes")
        broken = preflight(running, targets, body.read_bytes())
        rows = measure(running, [t for t in targets if t.key not in broken], body, args.runs, args.seconds)
    finally:
        for server in running.values():
            server.stop()
    print(f"\nmedians of {args.runs} interleaved run(s) of {args.seconds} s each, wrk -t1 -cC, echo V1 "
          f"{{\"instances\": [[16 floats]]}}; ±%: spread of req/s over the runs; CPU ms/req: all servers on the path\n")
    print("\n".join([*render(targets, rows, broken), "", *ratios(rows), table.others(rows),
                     f"total {time.monotonic() - began:.0f} s"]))


if __name__ == "__main__":
    main()

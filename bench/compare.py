"""modelhost side by side with KServe's ModelServer, MLServer and a bare Tornado handler, under wrk and h2load.

    python bench/compare.py            # 3 interleaved runs of 4 s per row, c = 1, 8, 64 (about 15 minutes)
    python bench/compare.py --quick    # 1 run of 2 s per row, c = 8 (AlexNet c = 1), to iterate (about 2 minutes)

Options: --access-logs turns every server's per-request access log on (off by
default, for all alike); --runs N and --seconds S override either mode; --cache DIR (default
bench/.cache) holds the peers' virtual environments, installed there on the
first run and reused, the ONNX files, the request bodies and the servers' logs.
Run it from the repository root with modelhost and the sample plugin installed
(README.md); it installs wrk, and h2load for the gRPC rows, with apt-get when
missing and it is root.

Every server is started once and serves every model; runs go round-robin over
servers within each case and concurrency, so a drift of the machine hits all
alike, and the table gives medians. Next to each row: the CPU seconds the
server's whole process tree used during one run, and per request. bench/README.md
explains the cases and holds the last full table. Beside the table it writes a
chart of req/s and p99 per server and concurrency (peers/chart.py; it needs
matplotlib, `pip install 'matplotlib>=3.8'`): --chart PATH, by default
bench/results/DATE-compare.svg (DATE-compare-logs-on.svg with --access-logs,
-quick.svg with --quick), and prints where.
"""

import argparse
import json
import resource
import shlex
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from peers import cases as casebook
from peers import chart, cpu, environment, grpc_infer, h2load, raw_ort, servers as launcher, sessions, table, wrk

LOGGING = {
    False: "per-request logging off everywhere: modelhost --log-level WARNING; KServe --enable_latency_logging False "
           "with its uvicorn.access, kserve.trace and kserve (a line per gRPC call) loggers at WARNING; MLServer "
           "\"debug\": false (no access log, no gRPC LoggingInterceptor); the bare handler logs nothing",
    True: "per-request logging on everywhere (--access-logs), each server as shipped: modelhost --log-level INFO "
          "(one access line); KServe --enable_latency_logging True with its default log configuration (uvicorn.access, "
          "kserve.trace, kserve's line per gRPC call); MLServer \"debug\": true (uvicorn's access log, gRPC's "
          "LoggingInterceptor); the bare handler Tornado's access log at INFO",
}
SETTLE = 0.5  # seconds of quiet before each run
# The summary's ratios of req/s: (what, case key, the row over, the row under), rows by their targets' keys.
RATIOS = [
    ("modelhost echo V1 / bare Tornado handler, req/s", "echo-v1", "modelhost", "bare"),
    ("echo in the server process: modelhost gRPC / KServe gRPC, calls/s", "echo-grpc", "modelhost", "kserve"),
    ("echo in the server process: modelhost gRPC / modelhost REST V2", "echo-grpc", "modelhost", "modelhost:REST V2"),
    ("echo in a worker process: modelhost gRPC / MLServer gRPC, calls/s", "echo-grpc-worker", "modelhost-worker",
     "mlserver"),
    ("echo in a worker process: modelhost gRPC / modelhost REST V2", "echo-grpc-worker", "modelhost-worker",
     "modelhost-worker:REST V2"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--access-logs", action="store_true",
                        help="every server writes its per-request access log (default: off for all)")
    environment.add_run_arguments(parser, 3, "1 run of 2 s, c = 8 only (AlexNet c = 1)")
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / ".cache",
                        help="virtual environments, models, bodies and logs (default: bench/.cache)")
    parser.add_argument("--chart", type=Path, help="where to write the chart (default: bench/results/DATE-compare.svg)")
    args = parser.parse_args()
    suffix = ("-logs-on" if args.access_logs else "") + ("-quick" if args.quick else "")
    results = Path(__file__).resolve().parent / "results"
    args.chart = args.chart or results / f"{time.strftime('%Y-%m-%d')}-compare{suffix}.svg"
    environment.set_run_lengths(args, 3)
    args.concurrencies, args.alexnet_concurrencies = ((8,), (1,)) if args.quick else ((1, 8, 64), (1, 8))
    return args


def install(cache: Path) -> tuple[dict, dict]:
    """The peers' interpreters, and why any peer is missing: the comparison goes on without it."""
    pythons, missing = {}, {}
    for peer in environment.PEERS:
        try:
            pythons[peer] = environment.venv_python(cache, peer)
        except RuntimeError as exc:
            print(f"!! {peer} could not be installed, going on without it: {exc}")
            missing[peer] = "could not be installed (said why at the top)"
    return pythons, missing


def raw_limits(seconds: float):
    """ONNX Runtime alone, in this process, with the servers' session options: what no server can beat.

    Printed before any server starts; returns ``alone(batch)``, which measures AlexNet's images/s again.
    """
    print("\nONNX Runtime session.run alone, in this process, same session options as the servers (the limit):")
    busy_before, mine_before = cpu.machine_busy_seconds(), own_cpu_seconds()

    def rates(session, one: np.ndarray) -> dict:
        return {batch: raw_ort.throughput(session, np.repeat(one, batch, axis=0), seconds) for batch in (1, 8)}

    alexnet_session = sessions.alexnet_session()
    alexnet = rates(alexnet_session, casebook.IMAGE)
    gemm = rates(sessions.gemm_session(), casebook.X)
    for name, rate, unit in (("AlexNet (default intra-op threads)", alexnet, "images/s"),
                             ("Gemm 16->4 (1 intra-op thread)", gemm, "rows/s")):
        print(f"  {name:<36} batch 1: {rate[1]:>9,.0f} {unit}   batch 8: {rate[8]:>9,.0f} {unit}")
    others = cpu.machine_busy_seconds() - busy_before - (own_cpu_seconds() - mine_before)
    print(f"  (other processes used {max(others, 0):.2f} CPU s meanwhile)")
    return lambda batch: raw_ort.throughput(alexnet_session, np.repeat(casebook.IMAGE, batch, axis=0), seconds)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def post(url: str, body: Path, headers: dict) -> dict:
    request = urllib.request.Request(url, data=body.read_bytes(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def answer(server, target) -> dict:
    """The target's answer to its body, as a JSON document; a gRPC target's also sets its ``answer_bytes``."""
    if target.grpc:
        document, target.answer_bytes = grpc_infer.infer(server.grpc_address, target.body)
        return document
    return post(server.url + target.path, target.body, target.headers)


def preflight(cases: list, running: dict) -> dict:
    """One request per case and server, checked against ONNX Runtime's answer; {(case, server): why} for failures.

    A gRPC target gets a real gRPC call: h2load would count a failed call as a success."""
    broken = {}
    for case in cases:
        for target in case.targets:
            if target.server not in running:
                continue
            try:
                right = case.answer_is_right(answer(running[target.server], target))
                reason = None if right else "answered, but not what ONNX Runtime computes"
            except (OSError, ValueError) as exc:  # refused, reset, an HTTP error status, not JSON
                reason = f"failed: {exc}"
            except grpc.RpcError as exc:  # the call's status, and the server's message
                reason = f"failed: gRPC {exc.code().name}: {exc.details()}"
            if reason:
                broken[case.key, target.key] = reason
                print(f"!! {case.title}: {running[target.server].label} {reason}")
    return broken


def load(server, target, concurrency: int, seconds: int) -> wrk.Result:
    """wrk for HTTP/1.1, h2load for gRPC, both with one thread and c connections of one request at a time."""
    if target.grpc:
        return h2load.run(f"http://{server.grpc_address}{target.path}", target.body, target.headers,
                          target.answer_bytes, concurrency, seconds)
    return wrk.run(server.url + target.path, target.body, target.headers, concurrency, seconds)


def one_run(server, target, concurrency: int, seconds: int) -> table.Run:
    server_before, busy_before = server.cpu_seconds(), cpu.machine_busy_seconds()
    result = load(server, target, concurrency, seconds)
    server_cpu = server.cpu_seconds() - server_before
    others = cpu.machine_busy_seconds() - busy_before - server_cpu - result.loader_cpu_s
    return table.Run(result, server_cpu, max(others, 0.0))


def measure(cases: list, running: dict, broken: dict, runs: int, seconds: int, alone) -> tuple[dict, dict]:
    """Every row's runs, round-robin; and AlexNet's ``alone(batch)`` images/s, measured in each round
    just before the servers' AlexNet runs at c = batch, so that the limit drifts with the machine as they do."""
    groups = [(case.key, concurrency, [target for target in case.targets
                                       if target.server in running and (case.key, target.key) not in broken])
              for case in cases for concurrency in case.concurrencies]
    count = sum(len(targets) for _, _, targets in groups)
    print(f"\n{count} rows x {runs} runs x {seconds} s, round-robin over servers (about "
          f"{count * runs * (seconds + SETTLE + 0.2) / 60:.0f} min), after a 1 s warm-up of each server and case")
    warm_up = {(key, target.key): target for key, _, targets in groups for target in targets}
    for target in warm_up.values():
        load(running[target.server], target, 8, 1)
    rows, limits = {}, {}
    for round_ in range(runs):
        print(f"  round {round_ + 1}/{runs}", flush=True)
        for key, concurrency, targets in groups:
            if key == "alexnet" and concurrency in (1, 8):
                time.sleep(SETTLE)
                limits.setdefault(concurrency, []).append(alone(concurrency))
            # Each round starts the round-robin at another server, so none is always the one that
            # follows a heavy run, and a pause lets that run's tail (spinning threads, a collector) end.
            shift = round_ % max(len(targets), 1)
            for target in targets[shift:] + targets[:shift]:
                time.sleep(SETTLE)
                run = one_run(running[target.server], target, concurrency, seconds)
                rows.setdefault((key, concurrency, target.key), table.Row([])).runs.append(run)
    return rows, limits


def summary(cases: list, rows: dict, limits: dict, limit_runs: dict, labels: dict) -> list[str]:
    """The ratios a reader asks first: against the ceiling, gRPC against the peers' and REST, and against the limit."""
    lines = []
    concurrencies = sorted({concurrency for _, concurrency, _ in rows})
    for title, case, mine, theirs in RATIOS:
        ratios = [f"c={c}: {rows[case, c, mine].rps / rows[case, c, theirs].rps:.2f}"
                  for c in concurrencies if (case, c, mine) in rows and (case, c, theirs) in rows]
        if ratios:
            lines.append(f"{title}: {', '.join(ratios)}")
    [alexnet] = [case for case in cases if case.key == "alexnet"]
    pairs = [(c, batch) for c, batch in ((1, 1), (8, 8)) if c in alexnet.concurrencies]
    lines.append("ONNX Runtime alone, measured in each round before the AlexNet runs at c = batch, images/s: "
                 + ", ".join(f"batch {batch}: {limits[batch]:,.0f} (median of {', '.join(f'{rate:.0f}' for rate in runs)})"
                             for batch, runs in sorted(limit_runs.items())))
    lines.append(f"{'AlexNet req/s / ONNX Runtime alone, images/s':<50}"
                 + "".join(f"{f'c={c} / batch {batch}':>16}" for c, batch in pairs))
    for target in alexnet.targets:
        cells = []
        for c, batch in pairs:
            row = rows.get(("alexnet", c, target.key))
            cells.append(f"{row.rps / limits[batch]:>16.2f}" if row else f"{'-':>16}")
        lines.append(f"  {table.label(labels, target):<48}{''.join(cells)}")
    return lines


def main() -> None:
    args = parse_args()
    began, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M %Z")
    command = shlex.join(["python", "bench/compare.py", *sys.argv[1:]])
    print(f"command: {command}")
    cache = environment.prepare_cache(args.cache)
    print(f"cache (virtual environments, models, bodies, server logs): {cache}")
    environment.ensure_tools()
    pythons, missing = install(cache)
    raw_ort.point_servers_at(cache / "models")
    print("\n".join(["", date, *environment.versions(pythons), LOGGING[args.access_logs]]))
    alone = raw_limits(1.0 if args.quick else 3.0)
    cases = casebook.build(cache / "bodies", args.concurrencies, args.alexnet_concurrencies)

    # Adaptive batching is off by default; one more server shows AlexNet with it on, against batch 8's limit.
    logs = args.access_logs
    running = {"modelhost": launcher.modelhost(0, logs), "modelhost-worker": launcher.modelhost(1, logs),
               "modelhost-batching": launcher.modelhost(0, logs, max_batch_size=8), "bare": launcher.bare_tornado(logs)}
    if "kserve" in pythons:
        running["kserve"] = launcher.kserve(pythons["kserve"], logs)
    if "mlserver" in pythons:
        running["mlserver"] = launcher.mlserver(pythons["mlserver"], cache / "mlserver", logs)
    labels = {key: server.label for key, server in running.items()}
    print("\nstarting the servers (logs in " + str(cache / "logs") + ")", flush=True)
    for key, why in launcher.launch(running, cache / "logs").items():
        missing[key] = why
        print(f"!! {why}")
    try:
        broken = preflight(cases, running)
        missing.update(broken)
        rows, limit_runs = measure(cases, running, broken, args.runs, args.seconds, alone)
    finally:
        for server in running.values():
            server.stop()

    print(f"\nmedians of {args.runs} interleaved run(s) of {args.seconds} s each, wrk with one thread and c connections;\n"
          "gRPC rows: h2load with one thread and c connections of one stream each, req/s meaning calls/s\n"
          "mh/peer: the modelhost row's req/s in the same mode (in-process, or worker for MLServer) / this row's;\n"
          "in the gRPC cases, against modelhost's REST V2 row too: above 1, gRPC serves more\n"
          "±%: spread of req/s over the runs; CPU s: the server's whole process tree during one run\n")
    print("\n".join(table.render(cases, labels, rows, missing)))
    limits = {batch: float(np.median(rates)) for batch, rates in limit_runs.items()}
    print("\n".join(["", *summary(cases, rows, limits, limit_runs, labels), table.others(rows)]))
    points = [chart.Point(case.title, table.label(labels, target), c, row.rps, row.median("p99_ms"))
              for case in cases for c in case.concurrencies for target in case.targets
              if (row := rows.get((case.key, c, target.key)))]
    alexnet = next(case.title for case in cases if case.key == "alexnet")
    results = chart.Results(command, date, points, limits, alexnet, chart.note(args.runs, args.seconds))
    print(f"chart: {chart.write(results, args.chart)}")
    print(f"total {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

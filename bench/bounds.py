"""How near any Tornado server on this machine comes to ONNX Runtime alone, AlexNet one request at a time.

    python bench/bounds.py [--rounds R] [--seconds S]

The performance issue asks modelhost for 0.95 of ``session.run`` alone at
c = 1. This puts modelhost beside bare Tornado handlers (peers/bare_onnx.py)
that do less than any real server could: one that only reads the body and
answers, one that runs the model on its event loop, and the same on
modelhost's connections (bodies read whole), also handing the run to a
thread; and modelhost with a model that does nothing (bench_plugins.py), whose
exchange is then the whole cost of a request. Each round measures ONNX Runtime alone (batch 1, in this process, the
servers' session options), then loads each server with ``wrk -c1`` on the V2
binary body that compare.py writes; the ratios are per round, then medians.
"""

import argparse
import os
import statistics
import sys

from modelhost_alexnet import network

from ab import start
from peers import cases, raw_ort, sessions, wrk
from steps import BENCH, BODY, HEADERS, PATH

SERVE = f"{sys.executable} -m modelhost serve --host 127.0.0.1 --http_port {{port}} --grpc_port 0 --log-level WARNING"
BARE = f"{sys.executable} {BENCH / 'peers' / 'bare_onnx.py'} {{port}}"
# The servers without a model show what the exchange of this body costs a request, a run aside.
WITHOUT_MODEL = {
    "bare, no model": f"{BARE} none",
    "modelhost, no model": f"{SERVE} --replicas 0 --plugin custom-model=bench_plugins:Nothing",
}
SERVERS = {
    **WITHOUT_MODEL,
    "bare, run on the loop": f"{BARE} loop",
    "bare, loop, whole bodies": f"{BARE} loop --whole-bodies",
    "bare, thread, whole bodies": f"{BARE} thread --whole-bodies",
    "modelhost in-process": f"{SERVE} --replicas 0 --model custom-model",
    "modelhost in a worker": f"{SERVE} --replicas 1 --model custom-model",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("MODELHOST_CACHE_DIR", str(BENCH / ".cache" / "models"))
    os.environ[sessions.ALEXNET_ENV] = str(network.model_path())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    session = sessions.alexnet_session()

    started, alone, rates = {}, [], {name: [] for name in SERVERS}
    try:
        for name, command in SERVERS.items():
            started[name] = start(command, PATH, BODY.read_bytes(), HEADERS)
        for round_number in range(1, args.rounds + 1):
            alone.append(raw_ort.throughput(session, cases.IMAGE, 3.0))
            print(f"round {round_number}: ONNX Runtime alone {alone[-1]:.1f} images/s", flush=True)
            for name, (_, port) in started.items():
                run = wrk.run(f"http://127.0.0.1:{port}{PATH}", BODY, HEADERS, 1, args.seconds)
                rates[name].append(run.requests_per_s)
                print(f"  {name:<28} {run.requests_per_s:8.1f} req/s  errors {run.errors}", flush=True)
    finally:
        for process, _ in started.values():
            process.terminate()
            process.wait()

    run_ms = 1000 / statistics.median(alone)
    print(f"\nmedians over {args.rounds} rounds, wrk -t1 -c1 -d{args.seconds}s, {BODY.stat().st_size:,} bytes a request; "
          f"ONNX Runtime alone {statistics.median(alone):.1f} images/s ({run_ms:.2f} ms a run)")
    print(f"  {'server':<28} {'req/s':>8} {'ms/request':>11} {'/ alone':>8}")
    for name, runs in rates.items():
        rate = statistics.median(runs)
        if name in WITHOUT_MODEL:  # what this exchange on top of a run would leave of ONNX Runtime alone
            ratio = run_ms / (run_ms + 1000 / rate)
            print(f"  {name:<28} {rate:8.1f} {1000 / rate:11.2f} {ratio:8.2f}  at most, with a run on top")
        else:
            ratio = statistics.median(rate / limit for rate, limit in zip(runs, alone))
            print(f"  {name:<28} {rate:8.1f} {1000 / rate:11.2f} {ratio:8.2f}")


if __name__ == "__main__":
    main()

"""Where a request's time goes inside modelhost: timestamps at each step of the path, medians over a wrk run.

    python bench/steps.py [-c N] [--seconds S] [-- SERVE_FLAGS ...]

By default it serves the sample AlexNet in-process and posts its V2 binary
body (compare.py builds the model and writes the body first). The server runs
in a child process with probes wrapped around the exchange's steps, the
queue, the hooks and the answer, each appending "time event" to a file; wrk
loads it, and the run is cut into cycles from one ``predict`` to the next.
Each event's offset into its cycle is printed as a median; at c > 1 the n-th
of an event counts apart (``headers #1`` ... ``headers #8``). For example, the
batching server at c = 8:

    python bench/steps.py -c 8 -- --replicas 0 --max_batch_size 8 --model custom-model
"""

import argparse
import functools
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from ab import start
from peers import wrk

BENCH = Path(__file__).resolve().parent
BODY = BENCH / ".cache" / "bodies" / "image-v2.bin"
HEADERS = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "122"}
PATH = "/v2/models/custom-model/infer"
# Cycles start at a predict's end; the first ones are warm-up.
CYCLE_START, WARM_UP = "predict done", 10


def serve_with_probes(timeline: str, serve_argv: list[str]) -> None:
    """Run ``modelhost serve`` in this process, its steps marked in ``timeline``."""
    from modelhost import batching, cli, inference, model, runner

    fd = os.open(timeline, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def mark(event: str) -> None:
        os.write(fd, b"%.6f %s\n" % (time.perf_counter(), event.encode()))

    def around(owner, name: str, before: str, after: str = "") -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def probed(*args, **kwargs):
            mark(before)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    mark(after)
        setattr(owner, name, probed)

    around(inference.Exchange, "headers_received", "headers")
    around(inference.Exchange, "finish", "body in")
    around(model.Model, "infer_batch", "hook thread starts", "hook thread done")
    around(runner, "settle_batch", "consumer resumes")
    around(inference.Exchange, "answer_outcome", "answer starts")
    around(inference.Exchange, "answer", "answer encoded", "answer sent")

    call = model.Model.call

    def hook_call(self, hook: str, **kwargs):
        mark(f"{hook} starts")
        try:
            return call(self, hook, **kwargs)
        finally:
            mark(f"{hook} done")
    model.Model.call = hook_call

    next_batch = batching.RequestQueue.next_batch

    async def batch_taken(self):
        batch = await next_batch(self)
        mark("batch taken")
        return batch
    batching.RequestQueue.next_batch = batch_taken

    sys.exit(cli.main(["serve", *serve_argv]))


def cycles(timeline: Path) -> list[list[tuple[float, str]]]:
    events = [(float(at), event) for at, event in (line.rstrip("\n").split(" ", 1) for line in timeline.open())]
    starts = [index for index, (_, event) in enumerate(events) if event == CYCLE_START]
    return [events[a:b + 1] for a, b in zip(starts[WARM_UP:], starts[WARM_UP + 1:])]


def offsets(cycle: list[tuple[float, str]]) -> dict[str, float]:
    """Each event's milliseconds into the cycle; an event that happens n times gets #1 ... #n."""
    counts, seen = Counter(event for _, event in cycle[1:-1]), Counter()
    marks = {}
    for at, event in cycle[1:]:
        seen[event] += 1
        label = f"{event} #{seen[event]}" if counts[event] > 1 else event
        marks.setdefault(label, (at - cycle[0][0]) * 1000)
    return marks


def report(all_cycles: list) -> None:
    by_label, order = defaultdict(list), {}
    for cycle in all_cycles:
        for position, (label, ms) in enumerate(offsets(cycle).items()):
            by_label[label].append(ms)
            order.setdefault(label, position)
    print(f"{len(all_cycles)} cycles, from one {CYCLE_START!r} to the next; median ms into the cycle:")
    common = [label for label in by_label if len(by_label[label]) > len(all_cycles) / 2]
    for label in sorted(common, key=lambda label: statistics.median(by_label[label])):
        print(f"  {statistics.median(by_label[label]):9.3f}  {label}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve_with_probes(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("serve_flags", nargs="*", default=["--replicas", "0", "--model", "custom-model"])
    args = parser.parse_args()
    os.environ.setdefault("MODELHOST_CACHE_DIR", str(BENCH / ".cache" / "models"))
    with tempfile.TemporaryDirectory() as scratch:
        timeline = Path(scratch) / "timeline"
        # ERROR: the readiness polls answered 503 while the model loads are warnings
        command = [sys.executable, __file__, "--serve", str(timeline), "--host", "127.0.0.1", "--http_port", "{port}",
                   "--log-level", "ERROR", *args.serve_flags]
        process, port = start(shlex.join(command), PATH, BODY.read_bytes(), HEADERS)
        try:
            timeline.write_bytes(b"")  # the readiness request's steps are not counted
            run = wrk.run(f"http://127.0.0.1:{port}{PATH}", BODY, HEADERS, args.connections, args.seconds)
        finally:
            process.terminate()
            process.wait()
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s: {run.requests_per_s:,.1f} req/s, "
              f"p99 {run.p99_ms:.2f} ms, errors {run.errors}")
        report(cycles(timeline))


if __name__ == "__main__":
    main()

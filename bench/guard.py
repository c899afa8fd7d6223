"""The request path's guard: this working tree against a named commit on the hot cases, interleaved.

    python bench/guard.py REV                 # 5 rounds of 3 s per case and checkout (about 3 min)
    python bench/guard.py REV --rounds 9 --seconds 4

REV is any commit git knows (``main``, ``HEAD~3``, a hash). Its ``host/`` is checked out once into
``bench/.cache/guard/SHA`` (a detached ``git worktree``) and served beside this working tree's: two servers a
checkout, started side by side, each put first on its server's PYTHONPATH, the same plugins for both (echo from
``plugins/echo``, the installed AlexNet sample as ``custom-model``). The cases are the ones every change to the
request path must not slow:

- echo V1 JSON, c=64, and echo V2 JSON, c=8, in the server process (``--replicas 0``);
- echo V2 JSON, c=8, in a worker process (``--replicas 1``);
- echo over gRPC (``ModelInfer`` with raw contents), c=8, in the server process (h2load);
- AlexNet, V2 binary FP32 [1,3,224,224], c=1, in the server process.

Each round loads every case on both checkouts in turn, the order swapped from round to round, so that the
machine's drift (±15% within minutes on a shared 2-core machine) hits both alike. Printed per case: each
checkout's median requests/s, then the working tree's over the commit's: the median of the rounds' own ratios
with their spread (lowest and highest), the same for server CPU per request (its process tree's, the steadier
figure), and p99 latency. A ratio's spread that straddles 1.00 is noise; a case whose every round is below it
has slowed. Not a test: the suite holds no timed assertion (the project's rule); run it before closing any
issue that touches the request path and quote what it prints.
"""

import argparse
import dataclasses
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import compare
from peers import cases, cpu, environment, grpc_infer
from peers.servers import ECHO_PLUGIN, PEERS, Server, environment as server_environment, free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class HotCase:
    title: str
    server: str  # "in-process" or "worker": which of a checkout's two servers answers
    path: str
    body: Path
    headers: dict
    connections: int
    grpc: bool = False
    answer_bytes: int = 0  # gRPC: a right answer's frame length (h2load.py counts answers by it)


def checkout(rev: str, cache: Path) -> Path:
    """REV's tree, checked out once under the cache; the folder to put first on PYTHONPATH is its host/."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                         text=True)
    if sha.returncode:
        raise SystemExit(f"git knows no commit {rev!r}: {sha.stderr.strip()}")
    folder = cache / "guard" / sha.stdout.strip()
    if not (folder / "host").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(folder), sha.stdout.strip()], cwd=ROOT,
                       check=True, capture_output=True)
    return folder / "host"


def servers_of(name: str, host: Path) -> dict:
    """A checkout's two servers: echo and AlexNet in the server process (with gRPC), echo in a worker."""
    made = {}
    for mode, replicas in (("in-process", 0), ("worker", 1)):
        port, grpc_port = free_port(), free_port()
        command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
                   "--grpc_port", str(grpc_port), "--log-level", "WARNING", "--replicas", str(replicas),
                   "--plugin", "echo=modelhost_echo:Echo", "--model", "custom-model"]
        made[mode] = Server(f"{name} {mode}", command, server_environment(host.resolve(), ECHO_PLUGIN, PEERS), port,
                            grpc_port)
    return made


def hot_cases(folder: Path) -> list:
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    v1 = write("guard-echo-v1.json", json.dumps({"instances": cases.X.tolist()}).encode())
    v2 = write("guard-x-v2.json", cases.v2_json("x", cases.X))
    binary, binary_headers = cases.v2_binary("input", cases.IMAGE)
    image = write("guard-image-v2.bin", binary)
    frame = write("guard-echo-grpc.bin", grpc_infer.frame("echo", "x", cases.X))
    echo_v2 = "/v2/models/echo/infer"
    return [
        HotCase("echo V1 JSON, in-process, c=64", "in-process", "/v1/models/echo:predict", v1, cases.JSON, 64),
        HotCase("echo V2 JSON, in-process, c=8", "in-process", echo_v2, v2, cases.JSON, 8),
        HotCase("echo V2 JSON, worker, c=8", "worker", echo_v2, v2, cases.JSON, 8),
        HotCase("echo gRPC, in-process, c=8", "in-process", grpc_infer.MODEL_INFER, frame, grpc_infer.HEADERS, 8,
                grpc=True),
        HotCase("AlexNet V2 binary, in-process, c=1", "in-process", "/v2/models/custom-model/infer", image,
                binary_headers, 1),
    ]


def load(server: Server, case: HotCase, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p99 ms, server CPU µs a request) of one run: compare.py's wrk or h2load run."""
    before = cpu.tree_seconds(server.process.pid)
    run = compare.load(server, case, case.connections, seconds)
    if run.errors:
        raise SystemExit(f"{server.label}: {run.errors} errors on {case.title}; see {server.log}")
    answered = max(run.requests, 1)
    return run.requests_per_s, run.p99_ms, (cpu.tree_seconds(server.process.pid) - before) / answered * 1e6


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def spread(ratios: list) -> str:
    return f"{statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare the working tree with (main, HEAD~1, a hash)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache")
    args = parser.parse_args()
    print("command: " + shlex.join(["python", "bench/guard.py", *sys.argv[1:]]))
    environment.ensure_tools()
    cache = environment.prepare_cache(args.cache)
    base = checkout(args.rev, cache)
    changed = len(git("status", "--short", "host").splitlines())
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}: the working tree (HEAD {git('rev-parse', '--short', 'HEAD')}, "
          f"{changed} file(s) changed in host/) against {args.rev} ({git('log', '-1', '--format=%h %s', args.rev)})")
    checkouts = {"tree": servers_of("tree", ROOT / "host"), "base": servers_of("base", base)}
    hot = hot_cases(cache / "bodies")
    logs = Path(tempfile.mkdtemp(prefix="guard-logs-"))
    every = [server for pair in checkouts.values() for server in pair.values()]
    try:
        for server in every:
            server.start(logs / f"{server.label.replace(' ', '-')}.log")
        for server in every:
            server.wait_ready(180)
        # h2load counts a call as answered by its bytes: learn a right answer's length from each checkout.
        grpc_case = next(case for case in hot if case.grpc)
        lengths = {name: grpc_infer.infer(pair["in-process"].grpc_address, grpc_case.body)[1]
                   for name, pair in checkouts.items()}
        if len(set(lengths.values())) != 1:
            raise SystemExit(f"the checkouts answer the gRPC call with frames of different lengths: {lengths}")
        hot = [dataclasses.replace(case, answer_bytes=lengths["tree"]) if case.grpc else case for case in hot]
        figures: dict = {(case.title, name): [] for case in hot for name in checkouts}
        for round_number in range(1, args.rounds + 1):
            order = list(checkouts) if round_number % 2 else list(reversed(checkouts))
            for case in hot:
                for name in order:
                    time.sleep(0.3)
                    figures[(case.title, name)].append(load(checkouts[name][case.server], case, args.seconds))
            print(f"round {round_number}/{args.rounds} done", flush=True)
    finally:
        for server in every:
            server.stop()
    print(f"\nmedians of {args.rounds} interleaved rounds of {args.seconds} s; tree/base: the median of the rounds' "
          "own ratios (lowest-highest)")
    print(f"{'case':<38}{'tree req/s':>11}{'base req/s':>11}  {'req/s tree/base':<26}{'CPU/request tree/base':<26}"
          f"{'p99 ms tree, base':>18}")
    for case in hot:
        tree, base_runs = figures[(case.title, "tree")], figures[(case.title, "base")]
        rates = [t[0] / b[0] for t, b in zip(tree, base_runs)]
        costs = [t[2] / b[2] for t, b in zip(tree, base_runs)]
        p99 = (statistics.median(run[1] for run in tree), statistics.median(run[1] for run in base_runs))
        print(f"{case.title:<38}{statistics.median(run[0] for run in tree):>11,.0f}"
              f"{statistics.median(run[0] for run in base_runs):>11,.0f}  {spread(rates):<26}{spread(costs):<26}"
              f"{p99[0]:>8.2f}, {p99[1]:.2f}")


if __name__ == "__main__":
    main()

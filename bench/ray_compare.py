"""modelhost's Ray runner against its worker pool and against KServe 0.21's Ray integration, under wrk.

    python bench/ray_compare.py            # 5 interleaved runs of 4 s per row, c = 1 and 8 (about 8 minutes)
    python bench/ray_compare.py --quick    # 1 run of 2 s per row, c = 8 only (about 2 minutes)

Options: --runs N and --seconds S override either mode; --no-pause leaves the other servers running during each
run (by default they are stopped with SIGSTOP: an idle Ray keeps spending CPU); --cache DIR (default
bench/.cache) holds KServe's Ray environment (``venvs/kserve-ray``, installed there on first use, as compare.py
installs its peers: peers/environment.py), the ONNX file, the request bodies and the servers' logs. Run it from
the repository root with modelhost, its ``ray`` extra and the sample plugin installed. The first run installs
KServe's environment (about 2 minutes).

Three servers, each started once (one after another, each timed to ready, each given a second try: a model that
does not load is said at once) on 127.0.0.1 and free ports, serving both models, per-request logs off:

- modelhost, Ray runner: ``modelhost serve --runner ray --replicas 2 --ray_actor_options '{"num_cpus": 0.3}'``,
  a local Ray the server starts for itself; 3 models (echo with and without batching, AlexNet) x 2 replicas x 0.3
  CPU fit the 2 CPUs Ray counts here (a logical count: it places replicas, it does not limit them);
- modelhost, worker pool: ``modelhost serve --replicas 2`` (the default runner: two worker processes a model);
- KServe 0.21 + Ray Serve: ``peers/kserve_ray.py``, compare.py's ``kserve.Model`` classes as ``@serve.deployment``
  classes, 2 replicas of 0.3 CPU each, served by ``kserve.ModelServer`` through ``kserve.ray.RayModel``.

Both modelhost servers run AlexNet with ``--max_batch_size 8`` (adaptive batching, before the Ray hop or the hop
to a worker), echo unbatched. Each Ray gets a temporary directory of its own (RAY_TMPDIR), so that neither joins
the other or a Ray already running here, and so that its processes can be found: Ray rewrites its workers'
command lines and may leave processes to init, but every process of it has that directory in its environment.

The cases are compare.py's: echo V1 (``{"instances": [[16 floats]]}``) and AlexNet with one preprocessed FP32
[1,3,224,224] image over V2 binary (KServe also over the base64 V2 JSON body compare.py gives it). Each answer is
checked once (echo gives back its input; AlexNet's top-5 scores match ONNX Runtime within 1e-4). wrk with one
thread; a 1 s warm-up of each row; the resident memory (PSS) of every server's processes and its Ray; then rounds,
each row once per case and c in a round, its order rotated from round to round, 0.5 s of quiet before each run,
the servers not under load stopped (SIGSTOP, every process of them and their Ray together) and resumed for their
own runs; the table gives medians. CPU ms/req counts every process of the server and its Ray, and is split by
part (server process, worker processes, replicas, Ray's own). At the end every server and every Ray process is
stopped, and the process table checked for any left.
"""

import argparse
import importlib.metadata
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import psutil
from modelhost_alexnet import network

from peers import cases as casebook
from peers import cpu, environment, servers as launcher, sessions, table, wrk

BENCH = Path(__file__).resolve().parent
SETTLE = 0.5  # seconds of quiet before each run
REPLICAS = 2
ACTOR_OPTIONS = json.dumps({"num_cpus": 0.3})  # up to 3 models x 2 replicas x 0.3 CPU: within the 2 CPUs Ray counts here
MAX_BATCH_SIZE = 8
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds to 127.0.0.1 (modelhost sets it itself)
TARGETS = {"echo": 2.0, "alexnet": 1.5}  # modelhost+Ray over KServe+Ray, req/s at c=8
START_TIMEOUT = 300  # seconds: a Ray, its Serve and four replicas on 2 shared cores
STOP_TIMEOUT = 90  # seconds a server gets to stop its Ray before it is killed
MIB = 2 ** 20


@dataclass
class Server(launcher.Server):
    """A server whose processes are its own tree and, with ``ray_dir``, every process of its Ray."""

    ray_dir: Optional[str] = None  # the RAY_TMPDIR its Ray runs under
    started_s: float = 0.0  # from start to ready
    seen: dict = field(default_factory=dict)  # pid -> psutil.Process of every process found, checked at the end
    paused: list = field(default_factory=list)  # its processes while stopped (SIGSTOP) for another's run

    def processes(self) -> list:
        found = {}

        def add(process) -> None:
            found[process.pid] = process
            try:
                for child in process.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass

        if self.process and self.process.poll() is None:  # once reaped, its pid may be another's
            try:
                add(psutil.Process(self.process.pid))
            except psutil.NoSuchProcess:
                pass
        if self.ray_dir:
            for process in psutil.process_iter(["cmdline", "environ"]):
                names = " ".join(process.info["cmdline"] or [])
                if self.ray_dir in names or (process.info["environ"] or {}).get("RAY_TMPDIR") == self.ray_dir:
                    add(process)
        self.seen.update(found)
        return list(found.values())

    def part(self, process: psutil.Process) -> str:
        """Which part of the server a process is: the server process, its workers, its Ray's replicas or the rest
        of its Ray (GCS, raylet, agents, Serve's controller)."""
        if process.pid == self.process.pid:
            return "server process"
        if not self.ray_dir:
            return "worker processes"
        return "replicas" if process.name().startswith("ray::ServeRepl") else "Ray's own processes"

    def cpu_by_process(self) -> dict:
        """{pid: (part, utime + stime)} of every process of it now."""
        spent = {}
        for process in self.processes():
            try:
                times = process.cpu_times()
                spent[process.pid] = (self.part(process), times.user + times.system)
            except psutil.NoSuchProcess:
                pass
        return spent

    def memory(self) -> dict:
        """{part: (PSS in bytes, processes)}."""
        parts = {}
        for process in self.processes():
            try:
                pss = process.memory_full_info().pss
                part = self.part(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total, count = parts.get(part, (0, 0))
            parts[part] = (total + pss, count + 1)
        return parts

    def pause(self) -> None:
        """SIGSTOP to every process of it, its Ray's included: a whole Ray, frozen together, keeps its own time."""
        if not self.paused:
            self.paused = self.processes()
            for process in self.paused:
                try:
                    process.suspend()
                except psutil.NoSuchProcess:
                    pass

    def resume(self) -> None:
        for process in self.paused:
            try:
                process.resume()
            except psutil.NoSuchProcess:
                pass
        self.paused = []

    def wait_ready(self, timeout: float) -> None:
        """Until ready, as the others wait; but a model that modelhost says cannot load ends the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return super().wait_ready(min(5.0, max(deadline - time.monotonic(), 0.1)))
            except RuntimeError:
                if self.process.poll() is not None or time.monotonic() >= deadline:
                    raise
            failed = [line.split(" ERROR modelhost: ", 1)[1] for line in self.log.read_text(errors="replace")
                      .splitlines() if " ERROR modelhost: model " in line and " is not ready: " in line]
            if failed:
                raise RuntimeError(failed[0][:400])

    def reap(self) -> list:
        """After stop: whatever of its Ray is left 30 s on is terminated (then killed); what that was."""
        lines = []
        if not self.ray_dir:
            return lines
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.processes():
            time.sleep(0.5)
        left = [process for process in self.processes() if living(process)]
        for process in left:
            try:
                lines.append(f"!! {self.label}: {process.pid} {process.name()} outlived it: terminated")
                process.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(left, timeout=10)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        return lines

    def stop(self) -> None:
        self.resume()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except launcher.subprocess.TimeoutExpired:
                print(f"!! {self.label} did not stop within {STOP_TIMEOUT} s: killed")
                self.process.kill()
                self.process.wait()


@dataclass
class Target:
    key: str
    server: str
    label: str
    path: str
    body: Path
    headers: dict


@dataclass
class Case:
    key: str
    title: str
    targets: list
    right: object  # answer document -> bool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    environment.add_run_arguments(parser, 5, "1 run of 2 s per row, c = 8 only")
    parser.add_argument("--no-pause", action="store_true",
                        help="leave the other servers running during each run (default: SIGSTOP them, so that "
                        "their idle Rays take no CPU from the server under load)")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache",
                        help="KServe's Ray environment, models, bodies and logs (default: bench/.cache)")
    args = parser.parse_args()
    environment.set_run_lengths(args, 5)
    args.concurrencies = (8,) if args.quick else (1, 8)
    return args


def base_env(*paths: Path, ray_dir: Optional[str] = None) -> dict:
    env = launcher.environment(*paths)
    env.pop("RAY_ADDRESS", None)  # a Ray of the server's own, never one named from outside
    if ray_dir:
        env["RAY_TMPDIR"] = ray_dir
    return env


def modelhost(label: str, ray_dir: Optional[str], *flags: str) -> Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--log-level", "WARNING", *flags, "--replicas", str(REPLICAS),
               "--max_batch_size", f"custom-model={MAX_BATCH_SIZE}", "--max_batch_size", f"echo-batched={MAX_BATCH_SIZE}",
               "--plugin", "echo=modelhost_echo:Echo", "--plugin", "echo-batched=modelhost_echo:Echo",
               "--model", "custom-model"]
    env = base_env(launcher.ECHO_PLUGIN, launcher.PEERS, ray_dir=ray_dir)
    return Server(label, command, env, port, grpc_port, ray_dir=ray_dir)


def kserve(python: Path, ray_dir: str) -> Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [str(python), str(launcher.PEERS / "kserve_ray.py"), "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--enable_latency_logging", "False",
               "--num_replicas", str(REPLICAS), "--ray_actor_options", ACTOR_OPTIONS]
    env = {**base_env(launcher.PEERS, ray_dir=ray_dir), launcher.ACCESS_LOGS: "", SINGLE_MACHINE: "0"}
    return Server(f"KServe 0.21 + Ray Serve (RayModel, {REPLICAS} replicas)", command, env, port, grpc_port,
                  ray_dir=ray_dir)


def build_cases(folder: Path) -> tuple[list, dict]:
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    echo_body = write("echo-v1.json", json.dumps({"instances": casebook.X.tolist()}).encode())
    binary, binary_headers = casebook.v2_binary("input", casebook.IMAGE)
    image = write("image-v2.bin", binary)
    image64 = write("image-v2-base64.json", casebook.v2_base64("input", casebook.IMAGE))
    session = sessions.alexnet_session()
    scores, _ = sessions.top5(sessions.run(session, casebook.IMAGE))
    del session
    alexnet = casebook.Case("alexnet", "", (), [], ("scores", scores))
    echo_path, alexnet_path, json_headers = "/v1/models/echo:predict", "/v2/models/custom-model/infer", casebook.JSON

    def echoes(document: dict) -> bool:
        return np.array_equal(np.asarray(document.get("predictions"), dtype=np.float32), casebook.X)

    return [
        Case("echo", f"echo, V1 JSON {{\"instances\": [[16 floats]]}} ({echo_body.stat().st_size} bytes)", [
            Target("mh-ray", "mh-ray", "modelhost, Ray runner", echo_path, echo_body, json_headers),
            # The same echo with adaptive batching: concurrent requests share one trip through Serve's handle.
            Target("mh-ray-batched", "mh-ray", f"modelhost, Ray runner, --max_batch_size {MAX_BATCH_SIZE}",
                   "/v1/models/echo-batched:predict", echo_body, json_headers),
            Target("mh-pool", "mh-pool", "modelhost, worker pool", echo_path, echo_body, json_headers),
            Target("ks-ray", "ks-ray", "KServe + Ray Serve", echo_path, echo_body, json_headers),
        ], echoes),
        Case("alexnet", f"AlexNet, one FP32 [1,3,224,224] image, top-5 out; req/s = images/s", [
            Target("mh-ray", "mh-ray", "modelhost, Ray runner, V2 binary", alexnet_path, image, binary_headers),
            Target("mh-pool", "mh-pool", "modelhost, worker pool, V2 binary", alexnet_path, image, binary_headers),
            Target("ks-ray", "ks-ray", "KServe + Ray Serve, V2 binary", alexnet_path, image, binary_headers),
            Target("ks-ray-base64", "ks-ray", "KServe + Ray Serve, base64 V2 JSON", alexnet_path, image64,
                   json_headers),
        ], alexnet.answer_is_right),
    ], {"binary": len(binary), "base64": image64.stat().st_size}


def start(servers: dict, logs: Path) -> dict:
    """One after another, each timed to ready, each given a second try; {key: why} for those that did not come up
    (removed)."""
    logs.mkdir(parents=True, exist_ok=True)
    failed = {}
    for key, server in list(servers.items()):
        for attempt in (1, 2):
            began = time.monotonic()
            server.start(logs / f"ray-compare-{key}{'' if attempt == 1 else '-again'}.log")
            try:
                server.wait_ready(START_TIMEOUT)
            except RuntimeError as exc:
                why = f"{server.label}: {exc}"
                server.stop()
                for line in server.reap():
                    print(line)
                print(f"!! {why}" + (" (see its log): starting it again, once" if attempt == 1 else ""), flush=True)
                if attempt == 2:
                    failed[key] = why
                    del servers[key]
                continue
            server.started_s = time.monotonic() - began
            print(f"  {server.label}: ready in {server.started_s:.0f} s"
                  + (" (at the second try)" if attempt == 2 else ""), flush=True)
            break
    return failed


def preflight(cases: list, running: dict) -> dict:
    """One request per row, its answer checked; {(case, row): why} for the rows that failed."""
    broken = {}
    for case in cases:
        for target in case.targets:
            server = running.get(target.server)
            if server is None:
                continue
            try:
                request = urllib.request.Request(server.url + target.path, data=target.body.read_bytes(),
                                                 headers=target.headers)
                with urllib.request.urlopen(request, timeout=60) as response:
                    document = json.loads(response.read())
                reason = None if case.right(document) else f"answered, but not the right answer: {str(document)[:200]}"
            except (OSError, ValueError) as exc:  # refused, reset, an HTTP error status, not JSON
                body = getattr(exc, "read", lambda: b"")()[:300]
                reason = f"failed: {exc} {body.decode(errors='replace')}".strip()
            if reason:
                broken[case.key, target.key] = reason
            print(f"  {case.key}: {target.label}: {'!! ' + reason if reason else 'right'}")
    return broken


def one_run(server: Server, target: Target, concurrency: int, seconds: int) -> tuple[table.Run, dict]:
    """The run, and the CPU seconds each part of the server spent in it."""
    before, busy_before = server.cpu_by_process(), cpu.machine_busy_seconds()
    result = wrk.run(server.url + target.path, target.body, target.headers, concurrency, seconds)
    busy_after, after = cpu.machine_busy_seconds(), server.cpu_by_process()
    parts = {}
    for pid, (part, spent) in after.items():  # a process that started meanwhile counts from 0
        parts[part] = parts.get(part, 0.0) + spent - before.get(pid, (part, 0.0))[1]
    total = sum(parts.values())
    others = busy_after - busy_before - total - result.loader_cpu_s
    return table.Run(result, total, max(others, 0.0)), parts


def focus(running: dict, key: str, pause: bool) -> None:
    """The server under load runs; with ``pause``, every other is stopped (SIGSTOP) meanwhile."""
    if pause:
        for other, server in running.items():
            if other != key:
                server.pause()
    running[key].resume()


def measure(cases: list, running: dict, broken: dict, args) -> tuple[dict, dict, dict]:
    groups = [(case.key, concurrency, [target for target in case.targets
                                       if target.server in running and (case.key, target.key) not in broken])
              for case in cases for concurrency in args.concurrencies]
    count = sum(len(targets) for _, _, targets in groups)
    print(f"\n{count} rows x {args.runs} runs x {args.seconds} s, interleaved (about "
          f"{count * args.runs * (args.seconds + SETTLE + 0.3) / 60:.0f} min), after a 1 s warm-up of each row",
          flush=True)
    for case in cases:
        for target in case.targets:
            if target.server in running and (case.key, target.key) not in broken:
                focus(running, target.server, not args.no_pause)
                time.sleep(SETTLE)
                wrk.run(running[target.server].url + target.path, target.body, target.headers, 8, 1)
    for server in running.values():
        server.resume()
    memory = {key: server.memory() for key, server in running.items()}
    rows, parts = {}, {}
    for round_ in range(args.runs):
        print(f"  round {round_ + 1}/{args.runs}", flush=True)
        for key, concurrency, targets in groups:
            shift = round_ % max(len(targets), 1)
            for target in targets[shift:] + targets[:shift]:
                focus(running, target.server, not args.no_pause)
                time.sleep(SETTLE)
                run, spent = one_run(running[target.server], target, concurrency, args.seconds)
                rows.setdefault((key, concurrency, target.key), table.Row([])).runs.append(run)
                parts.setdefault((key, concurrency, target.key), []).append(
                    {part: 1000 * seconds / max(run.result.requests, 1) for part, seconds in spent.items()})
    return rows, memory, parts


def render(cases: list, rows: dict, broken: dict, missing: dict, concurrencies: tuple) -> list:
    lines = [f"  {'row':<44}{'c':>4}{'req/s':>9}{'±%':>5}{'p50 ms':>9}{'p99 ms':>9}{'mh+Ray/row':>12}"
             f"{'CPU ms/req':>12}"]
    for case in cases:
        lines.append(case.title)
        for concurrency in concurrencies:
            ours = rows.get((case.key, concurrency, "mh-ray"))
            for target in case.targets:
                row = rows.get((case.key, concurrency, target.key))
                if row is None:
                    why = broken.get((case.key, target.key)) or missing.get(target.server, "no runs")
                    lines.append(f"  {target.label:<44}{concurrency:>4}   not run: {why}")
                    continue
                rates = [run.result.requests_per_s for run in row.runs]
                spread = 100 * (max(rates) - min(rates)) / row.rps if row.rps else 0
                per_request = statistics.median(1000 * run.server_cpu_s / max(run.result.requests, 1)
                                                for run in row.runs)
                ratio = f"{ours.rps / row.rps:.2f}x" if ours and row.rps and target.key != "mh-ray" else ""
                errors = sum(run.result.errors for run in row.runs)
                lines.append(f"  {target.label:<44}{concurrency:>4}{row.rps:>9.0f}{spread:>5.0f}"
                             f"{row.median('p50_ms'):>9.2f}{row.median('p99_ms'):>9.2f}{ratio:>12}"
                             f"{per_request:>12.2f}" + (f"  {errors} errors!" if errors else ""))
    return lines


def cpu_per_request(row) -> float:
    return statistics.median(1000 * run.server_cpu_s / max(run.result.requests, 1) for run in row.runs)


def summary(rows: dict, concurrencies: tuple) -> list:
    lines = []

    def ratio_line(title: str, case: str, mine: str, theirs: str) -> None:
        cells = [f"c={c}: {rows[case, c, mine].rps / rows[case, c, theirs].rps:.2f}x" for c in concurrencies
                 if (case, c, mine) in rows and (case, c, theirs) in rows and rows[case, c, theirs].rps]
        if cells:
            lines.append(f"  {title:<58}{', '.join(cells)}")

    lines.append("modelhost+Ray / KServe+Ray, req/s:")
    ratio_line("echo V1", "echo", "mh-ray", "ks-ray")
    ratio_line(f"echo V1, modelhost batching up to {MAX_BATCH_SIZE}", "echo", "mh-ray-batched", "ks-ray")
    ratio_line("AlexNet, KServe over V2 binary", "alexnet", "mh-ray", "ks-ray")
    ratio_line("AlexNet, KServe over base64 V2 JSON", "alexnet", "mh-ray", "ks-ray-base64")
    lines.append("modelhost+Ray / modelhost worker pool, req/s:")
    ratio_line("echo V1", "echo", "mh-ray", "mh-pool")
    ratio_line("AlexNet", "alexnet", "mh-ray", "mh-pool")

    lines.append("the Ray hop, per request at c=1 (modelhost Ray runner - modelhost worker pool):")
    for case, name in (("echo", "echo V1"), ("alexnet", "AlexNet")):
        ray, pool = rows.get((case, 1, "mh-ray")), rows.get((case, 1, "mh-pool"))
        if not (ray and pool and ray.rps and pool.rps):
            lines.append(f"  {name:<10}not measured" + (" (--quick runs c=8 only)" if 1 not in concurrencies else ""))
            continue
        wall = 1000 / ray.rps - 1000 / pool.rps
        lines.append(f"  {name:<10}{wall:+.2f} ms a request (1000/req/s: {1000 / ray.rps:.2f} against "
                     f"{1000 / pool.rps:.2f} ms), p50 {ray.median('p50_ms') - pool.median('p50_ms'):+.2f} ms, "
                     f"CPU {cpu_per_request(ray) - cpu_per_request(pool):+.2f} ms "
                     f"({cpu_per_request(ray):.2f} against {cpu_per_request(pool):.2f})")

    for case, name in (("echo", "echo"), ("alexnet", "AlexNet")):
        goal = TARGETS[case]
        theirs = [rows[case, 8, key] for key in ("ks-ray", "ks-ray-base64") if (case, 8, key) in rows]
        if (case, 8, "mh-ray") not in rows or not theirs:
            lines.append(f"target ({name}: modelhost+Ray >= {goal}x KServe+Ray at c=8): not measured")
            continue
        best = max(row.rps for row in theirs)  # against KServe's faster body
        ratio = rows[case, 8, "mh-ray"].rps / best if best else float("inf")
        lines.append(f"target ({name}: modelhost+Ray >= {goal}x KServe+Ray at c=8"
                     f"{', against its faster body' if len(theirs) > 1 else ''}): "
                     f"{'met' if ratio >= goal else 'NOT met'} ({ratio:.2f}x)")
    return lines


def cpu_lines(cases: list, parts: dict, concurrencies: tuple) -> list:
    """Where each row's CPU went: ms a request by part, medians over the runs."""
    lines = ["CPU ms a request by part (medians over the runs): where the hop's cost lies"]
    for case in cases:
        for concurrency in concurrencies:
            for target in case.targets:
                runs = parts.get((case.key, concurrency, target.key))
                if not runs:
                    continue
                names = sorted({name for run in runs for name in run}, key=PARTS.index)
                cells = ", ".join(f"{name} {statistics.median(run.get(name, 0.0) for run in runs):.2f}"
                                  for name in names)
                lines.append(f"  {case.key:<8}{target.label:<44}c={concurrency:<3}{cells}")
    return lines


PARTS = ["server process", "worker processes", "replicas", "Ray's own processes"]


def memory_lines(running: dict, memory: dict) -> list:
    lines = ["resident memory after the warm-up (PSS, psutil memory_full_info().pss, summed over every process of the "
             "server's tree and of its Ray):"]
    for key, server in running.items():
        parts = memory.get(key, {})
        total = sum(pss for pss, _ in parts.values())
        count = sum(number for _, number in parts.values())
        detail = ", ".join(f"{part} {pss / MIB:,.0f} MiB ({number})" for part, (pss, number) in parts.items())
        lines.append(f"  {server.label:<48}{total / MIB:>8,.0f} MiB in {count:>2} processes: {detail}")
    return lines


def living(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_all(servers: list) -> list:
    """Stop every server, then whatever of its Ray is left; the lines that say what, if anything, was left."""
    lines = []
    print("\nstopping the servers and their Rays", flush=True)
    for server in servers:
        server.resume()
    for server in servers:
        server.stop()
    for server in servers:
        lines += server.reap()
    # The check: no process that any server ran is alive (is_running also tells a reused pid apart), and ps lists
    # none in any of the Rays' directories.
    alive = [process for server in servers for process in server.seen.values() if living(process)]
    listed = launcher.subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    dirs = [server.ray_dir for server in servers if server.ray_dir]
    named = [line.strip() for line in listed.splitlines() if any(folder in line for folder in dirs)]
    seen = sum(len(server.seen) for server in servers)
    if alive or named:
        lines += [f"!! still running: {process.pid} {' '.join(process.cmdline())[:120]}" for process in alive]
        lines += [f"!! ps: {line[:160]}" for line in named]
    else:
        lines.append(f"stopped: none of the {seen} processes the servers ran is left, and ps lists none of their Rays")
    for folder in dirs:
        shutil.rmtree(folder, ignore_errors=True)
    return lines


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    # SIGTERM and SIGHUP as Ctrl-C: the servers are resumed and stopped on the way out, their Rays with them.
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda number, frame: sys.exit(128 + number))
    print("command: " + shlex.join(["python", "bench/ray_compare.py", *sys.argv[1:]]))
    cache = environment.prepare_cache(args.cache)
    print(f"cache (KServe's Ray environment, models, bodies, server logs): {cache}")
    environment.ensure_tools()
    missing = {}
    try:
        kserve_python = environment.venv_python(cache, "kserve-ray")
    except RuntimeError as exc:
        print(f"!! KServe's Ray environment could not be installed, going on without it: {exc}")
        kserve_python, missing["ks-ray"] = None, "could not be installed (said why at the top)"
    os.environ["MODELHOST_CACHE_DIR"] = str(cache / "models")
    os.environ[sessions.ALEXNET_ENV] = str(network.model_path())
    print("\n".join(["", time.strftime("%Y-%m-%d %H:%M %Z"),
                     *environment.versions({"kserve-ray": kserve_python} if kserve_python else {}),
                     f"modelhost's Ray: ray {importlib.metadata.version('ray')}",
                     "per-request logging off: modelhost --log-level WARNING (its Ray replicas' access log off); "
                     "KServe --enable_latency_logging False with its uvicorn.access, kserve.trace and kserve loggers "
                     "at WARNING, its Serve replicas' access log off"]))
    cases, sizes = build_cases(cache / "bodies")
    print(f"bodies: echo V1 {cases[0].targets[0].body.stat().st_size} bytes, AlexNet V2 binary {sizes['binary']:,} "
          f"bytes, base64 V2 JSON {sizes['base64']:,} bytes")

    ray_dirs = {key: tempfile.mkdtemp(prefix=f"ray-compare-{key}-") for key in ("mh-ray", "ks-ray")}
    servers = {
        "mh-ray": modelhost(f"modelhost, Ray runner (--runner ray, {REPLICAS} replicas)", ray_dirs["mh-ray"],
                            "--runner", "ray", "--ray_actor_options", ACTOR_OPTIONS),
        "mh-pool": modelhost(f"modelhost, worker pool (--replicas {REPLICAS})", None),
    }
    if kserve_python:
        servers["ks-ray"] = kserve(kserve_python, ray_dirs["ks-ray"])
    else:
        shutil.rmtree(ray_dirs["ks-ray"], ignore_errors=True)
    everything = list(servers.values())
    print(f"\nstarting the servers, one after another (logs in {cache / 'logs' / 'ray-compare-*.log'}):")
    for server in servers.values():
        print(f"  {server.label}: {shlex.join(server.command)}" + (f"  (RAY_TMPDIR={server.ray_dir})"
                                                                   if server.ray_dir else ""))
    rows, memory, parts, broken = {}, {}, {}, {}
    try:
        for key, why in start(servers, cache / "logs").items():
            missing[key] = why
        print("\nchecking each row once:")
        broken = preflight(cases, servers)
        rows, memory, parts = measure(cases, servers, broken, args)
    finally:
        stopped = stop_all(everything)
        if sys.exc_info()[0] is not None:  # stopped early (Ctrl-C, SIGTERM, a failure): say what was stopped
            print("\n".join(stopped), flush=True)
    others = ("the other servers running idle beside each run (--no-pause)" if args.no_pause
              else "the other servers stopped (SIGSTOP) during each run")
    print(f"\nmedians of {args.runs} interleaved run(s) of {args.seconds} s each, wrk -t1 -cC; ±%: spread of req/s "
          "over the runs;\nmh+Ray/row: the modelhost Ray runner's req/s over the row's; CPU ms/req: every process of "
          f"the server and of its Ray;\n{others}\n")
    print("\n".join([*render(cases, rows, broken, missing, args.concurrencies), "", *summary(rows, args.concurrencies),
                     "", *cpu_lines(cases, parts, args.concurrencies), "", *memory_lines(servers, memory),
                     "time to ready: " + ", ".join(f"{server.label} {server.started_s:.0f} s"
                                                   for server in servers.values()),
                     table.others(rows), *stopped, f"total {time.monotonic() - began:.0f} s"]))


if __name__ == "__main__":
    main()

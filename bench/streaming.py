"""Streamed generation (issue 36): what a stream's pieces cost, modelhost against KServe 0.21 and MLServer 1.7.

    python bench/streaming.py          # 3 interleaved runs of 3 s per row and c, then parts 2 and 3 (about 11 min)
    python bench/streaming.py --quick  # 1 run of 2 s per row and c, shorter parts 2 and 3 (about 4 min)
    python bench/streaming.py --sample-only --runs 5  # part 3 alone, 5 rounds, no peer installed (about 5 min)

Options: --runs N and --seconds S override either mode; --client-processes P splits the load generator over P
processes; --cache DIR (default bench/.cache) holds the peers' virtual environments (installed there on first
use, as compare.py installs them: peers/environment.py), the sample's weights, the bodies and the servers' logs.
Run it from the repository root with modelhost installed, and the generative sample
(``pip install -e ./sample_generative_plugin``) for part 3.

1. **Streaming overhead.** A generator that computes nothing and yields 200 pieces of "tok " per request, on
   every server (``peers/streaming_plugins.py``, ``peers/streaming_kserve.py``, ``peers/streaming_mlserver.py``),
   at 1, 8 and 64 streams open at once: pieces per second, time to the first piece (TTFT, p50 and p99), the
   server's CPU per piece and the load generator's share of a core. Two routes, each against the peer that
   serves it:
   - OpenAI completions, ``POST /openai/v1/completions`` with ``"stream": true`` and ``max_tokens`` 200: modelhost
     against KServe 0.21 serving an ``OpenAIGenerativeModel`` (its async generator of server-sent events, as
     KServe's vLLM runtime writes them; KServe needs vLLM's protocol types for this route: peers/vllm_stub);
   - V2 ``POST /v2/models/NAME/infer_stream``: modelhost against MLServer 1.7 serving an ``MLModel`` whose
     ``predict_stream`` yields an ``InferenceResponse`` per piece (``parallel_workers`` 0 and gzip off: MLServer
     streams only so, from its own process).
   modelhost serves the same pieces five ways: in the server process (``--replicas 0``) from a plain generator
   (each step on a hook thread), the same ``inline`` (each step on the event loop) and an ``async def``
   generator; and from a worker process (``--replicas 1``, the default), plain and async.
2. **Worker TTFT.** One piece per request (``max_tokens`` 1), one stream at a time, back to back: TTFT from a
   worker against the server process, for the same generator (target: at most +1 ms at p50).
3. **The sample.** tiny-gpt (sample_generative_plugin), greedy, 200 tokens from the plain loop's default
   prompt, one stream at a time: tokens per second through modelhost (in the server process and in a worker)
   against ``python -m modelhost_generative.loop`` in a plain process (target: at least 0.9x), each answer's text
   checked against the loop's. tiny-gpt steps its sequences (``begin`` and ``step``, continuous batching:
   continuous.py measures it under load); one stream at a time, each step advances that one alone, in place on
   the event loop of the process it runs in (the server's or a worker's). Both with OpenBLAS's threads as shipped
   and with ``OPENBLAS_NUM_THREADS=1``. Below each setting's rows, the floor (``peers/loop_to_socket.py``): the
   plain loop writing each piece with one ``send`` to a socket that another process reads, timed beside the loop
   alone. No HTTP, no server: the most a served row can give against the loop on this machine.

Every server is started once, on 127.0.0.1 and free ports, per-request logs off, and each route's answer is
checked once first (the pieces' text, their count, what ends the stream). The load generator is
``peers/sse_load.py`` (asyncio, an HTTP/1.1 reader of its own: its docstring says why not aiohttp's), in a
process of its own, with CPU counted by ``wait4``. A 1 s warm-up per row, then rounds: each row once per c in a
round, the order rotated from round to round, 0.5 s of quiet before each run; the tables give medians.
"""

import argparse
import collections
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from peers import cpu, environment, servers as launcher, table

BENCH = Path(__file__).resolve().parent
PEERS = launcher.PEERS
LOAD = PEERS / "sse_load.py"
PIECE, PIECES = "tok ", 200
CONCURRENCIES = (1, 8, 64)
SETTLE = 0.5  # seconds of quiet before each run
TTFT_TARGET_MS = 1.0  # issue 36: a worker's first piece at most 1 ms after the server process's
SAMPLE_TARGET = 0.9  # issue 36: the served sample at least 0.9x the plain loop's tokens/s
SAMPLE_MODEL = "tiny-gpt"
SAMPLE_TOKENS = 200
SAMPLE_PROMPT = "The model server answers one question at a time"  # the loop's default prompt
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1"}
CLIENT_SAID: set = set()


@dataclass
class Target:
    key: str
    label: str
    server: str  # key of the server that serves it
    model: str
    route: str  # "openai" or "v2"
    versus: Optional[str] = None  # the peer row its ratio is taken against
    events: int = 0  # the events one answer holds, found by the preflight


@dataclass
class Run:
    pieces_per_s: float
    ttft_ms: list
    errors: int
    statuses: dict
    server_cpu_s: float
    pieces_total: int
    client_cpu_s: float
    client_share: float  # of one core, over the client's life
    other_cpu_s: float


@dataclass
class Row:
    runs: list = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(getattr(run, name) for run in self.runs)

    def ttft(self, quantile: float) -> float:
        """The quantile of each run's TTFTs, the median over the runs (ms)."""
        return statistics.median(percentile(run.ttft_ms, quantile) for run in self.runs if run.ttft_ms) \
            if any(run.ttft_ms for run in self.runs) else float("nan")


def percentile(values: list, quantile: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(quantile * (len(ordered) - 1))))] if ordered else float("nan")


def parse_args(description: str = __doc__.splitlines()[0], seconds: int = 3, quick_seconds: int = 2,
               quick: str = "1 run of 2 s per row and c; shorter parts 2 and 3",
               cache: str = "the peers' virtual environments, weights, bodies and logs",
               parts: bool = False, rows: Optional[list] = None) -> argparse.Namespace:
    """The options of this script (``parts``: its own --sample-only), and of those built on it (continuous.py)
    with their own durations (``rows``: the keys of its rows, for its --rows)."""
    parser = argparse.ArgumentParser(description=description)
    if parts:
        parser.add_argument("--sample-only", action="store_true",
                            help="part 3 alone: the sample against its plain loop, no peer (--runs rounds)")
    if rows:
        parser.add_argument("--rows", type=lambda text: text.split(","), default=rows,
                            help=f"the rows to run, comma-separated (default: all of {','.join(rows)})")
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--runs", type=int, help="interleaved runs per row (default: 3; --quick: 1)")
    parser.add_argument("--seconds", type=int,
                        help=f"whole seconds per run (default: {seconds}; --quick: {quick_seconds})")
    parser.add_argument("--client-processes", type=int, default=1, help="processes of the load generator (default 1)")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache", help=f"{cache} (default: bench/.cache)")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.seconds = args.seconds or (quick_seconds if args.quick else seconds)
    return args


# The servers.

def modelhost(label: str, replicas: int, plugins: dict, env: Optional[dict] = None) -> launcher.Server:
    port = launcher.free_port()
    # --grpc_port 0: gRPC on, as shipped, on a port the system picks, so that no two servers contend for 8081.
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", "0", "--log-level", "WARNING", "--replicas", str(replicas)]
    for name, target in plugins.items():
        command += ["--model", name] if target is None else ["--plugin", f"{name}={target}"]
    return launcher.Server(label, command, {**launcher.environment(PEERS), **(env or {})}, port)


def kserve(python: Path) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [str(python), str(PEERS / "streaming_kserve.py"), "--http_port", str(port), "--grpc_port",
               str(grpc_port), "--enable_latency_logging", "False"]
    env = {**launcher.environment(PEERS, PEERS / "vllm_stub"), launcher.ACCESS_LOGS: ""}
    return launcher.Server("KServe 0.21 (OpenAIGenerativeModel, in-process)", command, env, port, grpc_port)


def mlserver(python: Path, workdir: Path) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    env = {**launcher.environment(PEERS), "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(grpc_port),
           "MLSERVER_METRICS_PORT": str(launcher.free_port())}
    workdir.mkdir(parents=True, exist_ok=True)  # MLServer writes .envs and .metrics into its working directory
    command = [str(python.parent / "mlserver"), "start", str(PEERS / "mlserver_streaming_repo")]
    return launcher.Server("MLServer 1.7 (MLModel.predict_stream, in-process)", command, env, port, grpc_port,
                           cwd=workdir)


PIECE_PLUGINS = {"pieces": "streaming_plugins:Pieces", "pieces-inline": "streaming_plugins:PiecesInline",
                 "pieces-async": "streaming_plugins:AsyncPieces"}


def build(pythons: dict, cache: Path, sample: bool) -> dict:
    servers = {
        "mh-in": modelhost("modelhost, in-process (--replicas 0)", 0, PIECE_PLUGINS),
        "mh-w": modelhost("modelhost, worker (--replicas 1)", 1,
                          {"pieces": PIECE_PLUGINS["pieces"], "pieces-async": PIECE_PLUGINS["pieces-async"]}),
    }
    if pythons.get("kserve"):
        servers["ks"] = kserve(pythons["kserve"])
    if pythons.get("mlserver"):
        servers["ml"] = mlserver(pythons["mlserver"], cache / "mlserver-streaming")
    if sample:
        for suffix, env in (("", {}), ("-1t", ONE_THREAD)):
            said = f" ({', '.join(f'{name}={value}' for name, value in env.items())})" if env else ""
            servers[f"gpt-in{suffix}"] = modelhost(f"modelhost, tiny-gpt in-process{said}", 0, {SAMPLE_MODEL: None},
                                                   env)
            servers[f"gpt-w{suffix}"] = modelhost(f"modelhost, tiny-gpt in a worker{said}", 1, {SAMPLE_MODEL: None},
                                                  env)
    return servers


def targets() -> list:
    rows = []
    for route, peer, peer_label in (("openai", "ks", "KServe 0.21, OpenAIGenerativeModel (async gen.)"),
                                    ("v2", "ml", "MLServer 1.7, MLModel.predict_stream (async gen.)")):
        rows += [Target(f"{route}/mh-in", "modelhost in-process, generator (hook thread)", "mh-in", "pieces", route),
                 Target(f"{route}/mh-inline", "modelhost in-process, generator, inline", "mh-in", "pieces-inline",
                        route),
                 Target(f"{route}/mh-async", "modelhost in-process, async generator", "mh-in", "pieces-async",
                        route),
                 Target(f"{route}/mh-w", "modelhost worker, generator", "mh-w", "pieces", route),
                 Target(f"{route}/mh-w-async", "modelhost worker, async generator", "mh-w", "pieces-async", route),
                 Target(f"{route}/{peer}", peer_label, peer, "pieces", route)]
        for row in rows[-6:-1]:
            row.versus = f"{route}/{peer}"
    return rows


# The requests.

def path(target: Target) -> str:
    return "/openai/v1/completions" if target.route == "openai" else f"/v2/models/{target.model}/infer_stream"


def body(target: Target, max_tokens: int = PIECES) -> bytes:
    if target.route == "openai":
        return json.dumps({"model": target.model, "prompt": "Tell", "max_tokens": max_tokens, "stream": True}).encode()
    text_input = {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["Tell"]}
    return json.dumps({"inputs": [text_input]}).encode()


def events_of(answer: bytes) -> list:
    return [line[5:].strip() for block in answer.split(b"\n\n") for line in block.split(b"\n")
            if line.startswith(b"data:")]


def post(url: str, route_path: str, payload: bytes, timeout: float = 60) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", route_path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check(target: Target, answer: bytes, pieces: int) -> tuple[int, Optional[str]]:
    """The events an answer holds, and what is wrong with it (None: it is right)."""
    events = events_of(answer)
    if target.route == "openai":
        if not events or events[-1] != b"[DONE]":
            return len(events), "it does not end with data: [DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(chunk["choices"][0]["text"] for chunk in chunks)
        if text != PIECE * pieces:
            return len(events), f"its text is {text[:40]!r}..., not {pieces} x {PIECE!r}"
        if chunks[-1]["choices"][0].get("finish_reason") != "length":
            return len(events), f"its last chunk is {chunks[-1]!r}, no finish_reason 'length'"
        return len(events), None
    texts = [json.loads(event)["outputs"][0]["data"][0] for event in events]
    if texts != [PIECE] * pieces:
        return len(events), f"{len(texts)} events, not {pieces} text_output {PIECE!r} ({texts[:2]!r}...)"
    return len(events), None


def preflight(servers: dict, rows: list, broken: dict, pieces: int = PIECES) -> None:
    for target in rows:
        if target.key in broken:
            continue
        if target.server not in servers:
            broken[target.key] = "its server did not start"
            continue
        try:
            status, answer = post(servers[target.server].url, path(target), body(target, pieces))
            if status != 200:
                raise ValueError(f"HTTP {status}: {answer[:200]!r}")
            target.events, why = check(target, answer, pieces)
            if why:
                broken[target.key] = why
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            broken[target.key] = f"failed: {exc}"
        said = f"!! {broken[target.key]}" if target.key in broken else f"{pieces} pieces in {target.events} events"
        print(f"  {target.label} ({path(target)}): {said}", flush=True)


# Part 1 and 2: the load.

def one_run(servers: dict, target: Target, payload: Path, concurrency: int, seconds: float, processes: int,
            pieces: int, stagger: float = 0.0) -> Run:
    """One run of sse_load (``stagger``: its --stagger, continuous.py's) and what the servers and others spent."""
    server = servers[target.server]
    figures = payload.with_suffix(".out.json")
    figures.unlink(missing_ok=True)
    command = [sys.executable, str(LOAD), "--url", server.url + path(target), "--body", str(payload),
               "-c", str(concurrency), "-d", str(seconds), "--pieces", str(pieces), "--events", str(target.events),
               "--processes", str(processes), "--stagger", str(stagger), "--out", str(figures)]
    everyone = lambda: sum(s.cpu_seconds() for s in servers.values())  # noqa: E731 -- idle servers count too
    own_before, all_before, busy_before = server.cpu_seconds(), everyone(), cpu.machine_busy_seconds()
    began = time.monotonic()
    output, client_cpu = cpu.run_counted(command)
    wall = time.monotonic() - began
    own, all_servers = server.cpu_seconds() - own_before, everyone() - all_before
    others = cpu.machine_busy_seconds() - busy_before - all_servers - client_cpu
    if output.strip():  # the client said something besides its figures: once per kind, it may matter
        said = output.strip().splitlines()[-1][:300]
        if said not in CLIENT_SAID:
            CLIENT_SAID.add(said)
            print(f"  (the load generator, {target.label}, c={concurrency}: {said})", flush=True)
    result = json.loads(figures.read_text())
    return Run(result["pieces"] / seconds, [1000 * t for t in result["ttft"]], result["errors"], result["statuses"],
               own, result["pieces_total"], client_cpu, client_cpu / wall, max(others, 0.0))


def write_bodies(folder: Path, rows: list, max_tokens: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    bodies = {}
    for target in rows:
        name = folder / f"streaming-{target.route}-{target.model}-{max_tokens}.json"
        name.write_bytes(body(target, max_tokens))
        bodies[target.key] = name
    return bodies


def measure(servers: dict, rows: list, bodies: dict, concurrencies: tuple, runs: int, seconds: float,
            processes: int, pieces: int = PIECES) -> dict:
    for target in rows:  # warm-up: 1 s at the middle concurrency
        one_run(servers, target, bodies[target.key], concurrencies[len(concurrencies) // 2], 1, processes, pieces)
    measured = {}
    for round_ in range(runs):
        print(f"  round {round_ + 1}/{runs}", flush=True)
        for concurrency in concurrencies:
            shift = round_ % len(rows)
            for target in rows[shift:] + rows[:shift]:
                time.sleep(SETTLE)
                run = one_run(servers, target, bodies[target.key], concurrency, seconds, processes, pieces)
                measured.setdefault((target.key, concurrency), Row()).runs.append(run)
    return measured


def render_load(rows: list, measured: dict, broken: dict, concurrencies: tuple) -> list:
    lines = [f"  {'row':<50}{'c':>3}{'pieces/s':>10}{'±%':>5}{'TTFT p50':>10}{'p99 ms':>9}{'CPU µs/piece':>14}"
             f"{'client':>8}{'mh/peer':>9}"]
    for concurrency in concurrencies:
        for target in rows:
            row = measured.get((target.key, concurrency))
            if row is None:
                lines.append(f"  {target.label:<50}{concurrency:>3}   not run: {broken.get(target.key, 'no runs')}")
                continue
            rate, spread, failed = summary([run.pieces_per_s for run in row.runs], row.runs)
            per_piece = statistics.median(1e6 * run.server_cpu_s / max(run.pieces_total, 1) for run in row.runs)
            peer = measured.get((target.versus, concurrency)) if target.versus else None
            ratio = f"{rate / statistics.median(r.pieces_per_s for r in peer.runs):.2f}x" if peer else ""
            lines.append(f"  {target.label:<50}{concurrency:>3}{rate:>10,.0f}{spread:>5.0f}{row.ttft(0.5):>10.2f}"
                         f"{row.ttft(0.99):>9.2f}{per_piece:>14.1f}{100 * row.median('client_share'):>7.0f}%"
                         f"{ratio:>9}{failed}")
    return lines


def start(servers: dict, cache: Path, name: str) -> dict:
    """Start the servers, each logging to ``cache``/logs/NAME-KEY.log, saying how; those that failed say why."""
    print(f"\nstarting the servers (logs in {cache / 'logs' / f'{name}-*.log'}):")
    for server in servers.values():
        print(f"  {server.label}: {shlex.join(server.command)}")
    logs = {f"{name}-{key}": server for key, server in servers.items()}
    for why in launcher.launch(logs, cache / "logs", timeout=240).values():
        print(f"!! {why}")
    return {key.removeprefix(f"{name}-"): server for key, server in logs.items()}


def summary(rates: list, runs: list) -> tuple[float, float, str]:
    """The median of a row's ``rates``, their spread in % of it, and what went wrong in its ``runs``, if anything."""
    rate = statistics.median(rates)
    spread = 100 * (max(rates) - min(rates)) / rate if rate else 0
    errors = sum(run.errors for run in runs)
    statuses: collections.Counter = collections.Counter()
    for run in runs:
        statuses.update(run.statuses)
    return rate, spread, f"  {errors} errors! {dict(statuses)}" if errors else ""


def ratios(rows: list, measured: dict, concurrencies: tuple) -> list:
    lines = []
    for target in rows:
        if not target.versus:
            continue
        cells = []
        for concurrency in concurrencies:
            mine, theirs = measured.get((target.key, concurrency)), measured.get((target.versus, concurrency))
            if mine and theirs:
                rate = statistics.median(r.pieces_per_s for r in mine.runs)
                peer = statistics.median(r.pieces_per_s for r in theirs.runs)
                cells.append(f"c={concurrency}: {rate / peer:.2f}x (TTFT p50 {mine.ttft(0.5):.1f} vs "
                             f"{theirs.ttft(0.5):.1f} ms)")
        if cells:
            peer_name = "KServe" if target.versus.endswith("/ks") else "MLServer"
            lines.append(f"  {target.label} / {peer_name}: {'; '.join(cells)}")
    return lines


def ttft_part(servers: dict, cache: Path, broken: dict, runs: int, seconds: float, processes: int) -> list:
    rows = [Target("t/mh-in", "modelhost in-process, generator (hook thread)", "mh-in", "pieces", "openai"),
            Target("t/mh-w", "modelhost worker, generator", "mh-w", "pieces", "openai", versus="t/mh-in"),
            Target("t/mh-async", "modelhost in-process, async generator", "mh-in", "pieces-async", "openai"),
            Target("t/mh-w-async", "modelhost worker, async generator", "mh-w", "pieces-async", "openai",
                   versus="t/mh-async"),
            Target("t/mh-inline", "modelhost in-process, generator, inline", "mh-in", "pieces-inline", "openai"),
            Target("t/ks", "KServe 0.21, OpenAIGenerativeModel (async gen.)", "ks", "pieces", "openai")]
    print("\n2. worker TTFT: checking each row once, max_tokens 1", flush=True)
    preflight(servers, rows, broken, pieces=1)
    live = [target for target in rows if target.key not in broken]
    bodies = write_bodies(cache / "bodies", live, 1)
    print(f"{len(live)} rows x {runs} runs x {seconds} s at c=1, interleaved", flush=True)
    measured = measure(servers, live, bodies, (1,), runs, seconds, processes, pieces=1)
    lines = ["", "2. worker TTFT: POST /openai/v1/completions, \"stream\": true, max_tokens 1 (one piece, the "
             f"finishing chunk, [DONE]), one stream at a time, back to back; medians of {runs} run(s) of {seconds} s",
             f"  {'row':<50}{'streams/s':>10}{'TTFT p50':>10}{'p90':>8}{'p99 ms':>9}{'CPU µs/stream':>15}"]
    for target in rows:
        row = measured.get((target.key, 1))
        if row is None:
            lines.append(f"  {target.label:<50}   not run: {broken.get(target.key, 'no runs')}")
            continue
        streams = row.median("pieces_per_s")  # one piece a stream
        per_stream = statistics.median(1e6 * run.server_cpu_s / max(run.pieces_total, 1) for run in row.runs)
        lines.append(f"  {target.label:<50}{streams:>10,.0f}{row.ttft(0.5):>10.3f}{row.ttft(0.9):>8.3f}"
                     f"{row.ttft(0.99):>9.3f}{per_stream:>15.0f}")
    for target in rows:
        mine, theirs = measured.get((target.key, 1)), measured.get((target.versus, 1))
        if target.versus and mine and theirs:
            added = mine.ttft(0.5) - theirs.ttft(0.5)
            lines.append(f"  {target.label} - in-process: TTFT p50 {added:+.3f} ms, p99 "
                         f"{mine.ttft(0.99) - theirs.ttft(0.99):+.3f} ms; target (p50 at most +{TTFT_TARGET_MS:g} ms): "
                         f"{'met' if added <= TTFT_TARGET_MS else 'NOT met'}")
    return lines


# Part 3: the sample.

def served_generation(url: str) -> dict:
    """One streamed greedy completion from tiny-gpt: its text, tokens (usage), TTFT and tokens/s to its end."""
    payload = json.dumps({"model": SAMPLE_MODEL, "prompt": SAMPLE_PROMPT, "max_tokens": SAMPLE_TOKENS,
                          "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    texts, tokens, first, finished, pending = [], None, None, None, b""
    try:
        sent = time.perf_counter()
        connection.request("POST", "/openai/v1/completions", payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {response.read()[:200]!r}")
        while chunk := response.read1(65536):
            now = time.perf_counter()
            *complete, pending = (pending + chunk).split(b"\n\n")
            for event in events_of(b"\n\n".join(complete)):
                if event == b"[DONE]":
                    continue
                message = json.loads(event)
                if message.get("usage"):
                    tokens = message["usage"]["completion_tokens"]
                for choice in message.get("choices") or []:
                    if choice.get("text"):
                        texts.append(choice["text"])
                        first = first if first is not None else now - sent
                    if choice.get("finish_reason"):
                        finished = now - sent
    finally:
        connection.close()
    if tokens is None or finished is None:
        raise ValueError("the stream had no usage or no finishing chunk")
    return {"text": "".join(texts), "tokens": tokens, "ttft_ms": 1000 * (first or finished),
            "tokens_per_s": tokens / finished}


def plain_loop(env: dict, runs: int, quiet: bool) -> dict:
    command = [sys.executable, "-m", "modelhost_generative.loop", "--prompt", SAMPLE_PROMPT, "--max-tokens",
               str(SAMPLE_TOKENS), "--temperature", "0", "--runs", str(runs)] + (["--quiet"] if quiet else [])
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the loop exited with {done.returncode}: {done.stderr.strip()[-400:]}")
    found = {"tokens_per_s": re.search(r"tokens/s: median ([\d.]+)", done.stdout),
             "ttft_ms": re.search(r"first token: median ([\d.]+) ms", done.stdout),
             "text": re.search(r"text \((\d+) tokens\): (.*)", done.stdout)}
    if not found["tokens_per_s"]:
        raise RuntimeError(f"no tokens/s in the loop's output: {done.stdout[-400:]}")
    out = {"tokens_per_s": float(found["tokens_per_s"].group(1)), "ttft_ms": float(found["ttft_ms"].group(1))}
    if found["text"]:
        import ast
        out["tokens"], out["text"] = int(found["text"].group(1)), ast.literal_eval(found["text"].group(2))
    return out


def sample_part(servers: dict, rounds: int, generations: int) -> list:
    variants = (("threads as shipped", "", {}), ("OPENBLAS_NUM_THREADS=1", "-1t", ONE_THREAD))
    print(f"\n3. the sample: {rounds} round(s), each the plain loop ({generations} generations) and "
          f"{generations} served generations per server, per BLAS setting", flush=True)
    lines = ["", f"3. the sample: {SAMPLE_MODEL} (steps), greedy, {SAMPLE_TOKENS} tokens from {SAMPLE_PROMPT!r}, one "
             f"stream at a time; tokens/s from the request (the prompt's text) to the last token; medians of "
             f"{rounds} round(s) of {generations} generations",
             f"  {'':<26}{'row':<40}{'tokens/s':>10}{'±%':>5}{'TTFT ms':>9}{'/ loop':>8}{'same text':>11}"]
    summary = []
    for title, suffix, env in variants:
        try:
            reference = plain_loop(env, 1, quiet=False)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            lines.append(f"  {title:<26}not run: {exc}")
            continue
        rows = {"loop": [], f"gpt-in{suffix}": [], f"gpt-w{suffix}": []}
        same = {key: True for key in rows}
        problems = {}
        for _ in range(rounds):
            order = list(rows)
            for key in order:
                if key == "loop":
                    rows[key].append(plain_loop(env, generations, quiet=True))
                    continue
                if key not in servers:
                    problems[key] = "its server did not start"
                    continue
                try:
                    runs = [served_generation(servers[key].url) for _ in range(generations)]
                except (OSError, ValueError, KeyError) as exc:
                    problems[key] = f"failed: {exc}"
                    continue
                same[key] = same[key] and all(run["text"] == reference.get("text") for run in runs)
                rows[key].append({"tokens_per_s": statistics.median(run["tokens_per_s"] for run in runs),
                                  "ttft_ms": statistics.median(run["ttft_ms"] for run in runs)})
        loop_rates = [run["tokens_per_s"] for run in rows["loop"]]
        for key, label in (("loop", "plain loop (python -m modelhost_generative.loop)"),
                           (f"gpt-in{suffix}", "modelhost in-process (--replicas 0)"),
                           (f"gpt-w{suffix}", "modelhost worker (--replicas 1)")):
            if not rows[key]:
                lines.append(f"  {title:<26}{label:<40}not run: {problems.get(key, 'no runs')}")
                continue
            rates = [run["tokens_per_s"] for run in rows[key]]
            rate = statistics.median(rates)
            spread = 100 * (max(rates) - min(rates)) / rate if rate else 0
            # Each round's own ratio, the median of them: the loop drifts with the machine as the servers do.
            ratio = statistics.median(r / l for r, l in zip(rates, loop_rates)) if key != "loop" else 1.0
            ttft = statistics.median(run["ttft_ms"] for run in rows[key])
            text = "" if key == "loop" else ("yes" if same[key] else "NO")
            lines.append(f"  {title:<26}{label:<40}{rate:>10.0f}{spread:>5.0f}{ttft:>9.2f}{ratio:>7.2f}x{text:>11}")
            if key != "loop":
                summary.append(f"  {label}, {title}: {ratio:.2f}x the plain loop; target (at least {SAMPLE_TARGET}x): "
                               f"{'met' if ratio >= SAMPLE_TARGET else 'NOT met'}")
        lines.append(f"  {title:<26}{floor(env, rounds * generations)}")
    return lines + summary


def floor(env: dict, runs: int) -> str:
    """The most any served row can give here: the loop writing each piece to a socket, beside the loop alone."""
    label = "floor: the loop, each piece to a socket"
    command = [sys.executable, str(PEERS / "loop_to_socket.py"), "--max-tokens", str(SAMPLE_TOKENS),
               "--runs", str(runs)]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if done.returncode:
        return f"{label:<40}not run: {done.stderr.strip()[-300:]}"
    measured = json.loads(done.stdout)
    return (f"{label:<40}{measured['writing']:>10.0f}{'':>14}{measured['ratio']:>7.2f}x  (against the loop alone "
            f"beside it, {measured['alone']:.0f} tokens/s: bench/peers/loop_to_socket.py)")


def versions(pythons: dict) -> list:
    mine = importlib.metadata.version
    loop = f"uvloop {mine('uvloop')}" if importlib.util.find_spec("uvloop") else "asyncio"
    lines = [f"cores: {os.cpu_count()}, Python {sys.version.split()[0]}, load generator peers/sse_load.py on {loop}",
             f"modelhost {mine('modelhost')} (tornado {mine('tornado')}, orjson {mine('orjson')}), from "
             f"{Path(importlib.util.find_spec('modelhost').origin).parent}"]
    return lines + [environment.peer_line(peer, python, environment.VERSIONS[peer][:3] + ["starlette", "pydantic"])
                    for peer, python in pythons.items() if python is not None]


def main() -> None:
    args = parse_args(parts=True)
    began = time.monotonic()
    print("command: " + shlex.join(["python", "bench/streaming.py", *sys.argv[1:]]))
    cache = environment.prepare_cache(args.cache)
    print(f"cache (the peers' environments, the sample's weights, bodies, server logs): {cache}")
    pythons = {}
    for peer in () if args.sample_only else ("kserve", "mlserver"):
        try:
            pythons[peer] = environment.venv_python(cache, peer)
        except RuntimeError as exc:
            print(f"!! {peer} could not be installed, going on without it: {exc}")
            pythons[peer] = None
    sample = importlib.util.find_spec("modelhost_generative") is not None
    os.environ["MODELHOST_CACHE_DIR"] = str(cache / "models")  # the sample's weights, for the loop and the servers
    print("\n".join(["", time.strftime("%Y-%m-%d %H:%M %Z"), *versions(pythons),
                     "per-request logging off: modelhost --log-level WARNING; KServe --enable_latency_logging False "
                     "with its uvicorn.access, kserve.trace and kserve loggers at WARNING; MLServer \"debug\": false"]))
    if not sample:
        print("!! the generative sample is not installed (pip install -e ./sample_generative_plugin): no part 3")

    servers = build(pythons, cache, sample)
    if args.sample_only:
        servers = {key: server for key, server in servers.items() if key.startswith("gpt")}
    servers = start(servers, cache, "streaming")
    try:
        if args.sample_only:
            if sample:
                print("\n".join(sample_part(servers, args.runs, 3 if args.quick else 5)), flush=True)
            return
        rows, broken = targets(), {}
        print(f"\n1. streaming overhead: checking each row once, {PIECES} pieces of {PIECE!r} a stream", flush=True)
        preflight(servers, rows, broken)
        live = [target for target in rows if target.key not in broken]
        bodies = write_bodies(cache / "bodies", live, PIECES)
        print(f"{len(live)} rows x {len(CONCURRENCIES)} c x {args.runs} runs x {args.seconds} s, interleaved (about "
              f"{len(live) * len(CONCURRENCIES) * args.runs * (args.seconds + SETTLE + 0.6) / 60:.0f} min), after a "
              "1 s warm-up of each row", flush=True)
        measured = measure(servers, live, bodies, CONCURRENCIES, args.runs, args.seconds, args.client_processes)
        lines = [f"\n1. streaming overhead: {PIECES} pieces of {PIECE!r} a stream, a generator that computes nothing; "
                 f"medians of {args.runs} interleaved run(s) of {args.seconds} s; ±%: spread of pieces/s over the "
                 "runs; TTFT: from the request to its first piece; CPU µs/piece: the row's server (its workers "
                 "included); client: the load generator's share of one core; mh/peer: pieces/s over the peer's"]
        for route, title in (("openai", "OpenAI completions: POST /openai/v1/completions, \"stream\": true, "
                                        f"max_tokens {PIECES} (against KServe)"),
                             ("v2", "V2: POST /v2/models/NAME/infer_stream, text_output BYTES a piece (against "
                                    "MLServer)")):
            subset = [target for target in rows if target.route == route]
            lines += ["", title, *render_load(subset, measured, broken, CONCURRENCIES)]
        lines += ["", "pieces/s against the peer (above 1: modelhost streams more):",
                  *ratios(rows, measured, CONCURRENCIES), table.others(measured, "the load generator")]
        print("\n".join(lines), flush=True)
        print("\n".join(ttft_part(servers, cache, broken, max(args.runs, 3), args.seconds, 1)), flush=True)
        if sample:
            print("\n".join(sample_part(servers, args.runs, 3 if args.quick else 5)), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(f"\ntotal {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

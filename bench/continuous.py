"""Continuous batching (issue 37): tiny-gpt's sequences stepped together, against one at a time and KServe 0.21.

    python bench/continuous.py          # 3 interleaved runs of 10 s per row (about 9 min)
    python bench/continuous.py --quick  # 1 run of 4 s per row (about 3 min)

Options: --runs N and --seconds S override either mode; --rows steps-w,gen-w runs those rows alone (keys: steps-w,
steps-in, gen-w, ks, ks-direct); --client-processes P splits the load generator over P
processes; --cache DIR (default bench/.cache) holds KServe's virtual environment (``kserve-generative`` in
peers/environment.py: KServe 0.21 on this machine's NumPy and tokenizers, installed there on first use), the
sample's weights, the bodies and the servers' logs. Run it from the repository root with modelhost and the
generative sample installed (``pip install -e ./sample_generative_plugin``).

The sample's network, greedy (``"temperature": 0``), ``max_tokens`` 200 from the plain loop's default prompt
("The model server answers one question at a time"), streamed: ``POST /openai/v1/completions`` with ``"stream":
true``, at 1 and 32 streams open at once, served four ways:
- modelhost, ``tiny-gpt`` (the sample's entry point, ``TinyGPT``: ``begin`` and ``step`` hooks, every active
  sequence advanced a token in one batched forward pass a step, ``Network.decode_batch``) in a worker
  (``--replicas 1``, the default) and in the server process (``--replicas 0``);
- modelhost, ``TinyGPTGenerator`` (the same network one sequence at a time through a ``generate`` hook, served as
  ``--plugin tiny-gen=modelhost_generative.plugin:TinyGPTGenerator``) in a worker: what continuous batching is
  measured against;
- KServe 0.21 serving the same network as an ``OpenAIGenerativeModel`` (``peers/continuous_kserve.py``): its own
  loop per request, an async generator of completion chunks that steps the sample's plain ``pieces`` generator,
  as a KServe user would write it: each ``next()`` through ``await asyncio.to_thread(...)`` (the peer's row, at
  c=1 and 32), and, at c=32 only, each ``next()`` called directly on the event loop (``tiny-gpt-direct``: the
  streams served one after another, whole; more tokens/s than through threads, a TTFT of seconds).

Targets (issue 37), each printed with its ratio and "met" or "NOT met": at c=32, tiny-gpt with steps gives at
least 6x the tokens/s of TinyGPTGenerator (both in a worker; the server process's row is judged against the same
figure), and at least 5x KServe's (each KServe row); its TTFT at p99 at c=32 is at most 2x the single-stream
figure, its TTFT p50 at c=1 on the same server (the p99 over p99 is printed beside it). Beside them, the
sample's batched step alone in a plain process (``peers/batched_loop.py``: 32 sequences stepped together to 200
tokens, no server) gives what no server's c=32 row can pass here, as the plain loop does for one stream; the
ceilings after the targets say what it leaves of them: the length of its step, which a new request arriving
at c=32 waits for, and 5x KServe's step on the event loop over it.

Before the load, the plain loop (``python -m modelhost_generative.loop``) gives the reference text and tokens,
and each server's streamed answer is read whole once and checked: its text is the loop's, its text pieces come
first, its last chunk says ``finish_reason`` "length", then ``[DONE]``. Tokens/s: the load generator counts
pieces (the answer's first events, those that hold text); each answer is the same greedy text, so a piece holds
on average the loop's tokens over the preflight's pieces (1 for this prompt: the check prints both), and
tokens/s is pieces/s times that. CPU µs/token: the server's process tree (its worker included) over the run,
ramp and drain included, over all the pieces it sent, the same way.

The load generator is ``peers/sse_load.py``, in a process of its own (streaming.py's; its docstring says why
not aiohttp's). Closed-loop streams that all start at the same instant and whose answers are all as long stay
synchronised: all 32 end at the same step, and all 32 next requests then arrive, and prefill, together, a wave
that no scheduler answers quickly (the last of them waits for 31 prefills); real streams arrive at any time.
So each c=32 run uses ``--stagger``: stream i of 32 starts i*S/32 after the common start, S the row's own
stream duration under that load, taken from its warm-up (a 3 s run of all 32 at once: 32 streams x 200 pieces
over its pieces/s, by Little's law), so that the starts stay spread over one stream's life; the load generator
counts the -d seconds from the last stream's start, and keeps the TTFTs of the requests sent within them only.
Runs are 10 s (4 with --quick), some four stream lives of the batched rows, so that steady state dominates.

``OPENBLAS_NUM_THREADS=1`` for every server and both loops without a server: two cores are shared by the model,
the server process (and a worker) and the load generator, and OpenBLAS's second thread (it starts as many as
there are cores) fights them for the other core, spinning while it waits, which makes every figure slower and
noisier (streaming.py's part 3 saw the plain loop fall from about 1,075 to 158 tokens/s with two threads on a
busy machine).

Every server is started once, on 127.0.0.1 and free ports, per-request logs off (modelhost ``--log-level
WARNING``; KServe ``--enable_latency_logging False`` with its per-request loggers at WARNING). A warm-up of each
row, then rounds: each row (server and c) once in a round, the order rotated from round to round, 0.5 s of
quiet before each run; the table gives medians, TTFT quantiles the median of each run's.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import streaming
from peers import cpu, environment, servers as launcher, table

BENCH = Path(__file__).resolve().parent
PEERS = launcher.PEERS
SAMPLE = BENCH.parent / "sample_generative_plugin"
PROMPT, TOKENS = streaming.SAMPLE_PROMPT, streaming.SAMPLE_TOKENS  # the loop's default prompt, 200 tokens
STREAMS = 32
CONCURRENCIES = (1, STREAMS)
ONLY_MANY = {"ks-direct"}  # rows measured at c=32 only
WARM_UP = 3  # seconds of the warm-up at c=32, which also gives the row's stagger
ONE_THREAD = streaming.ONE_THREAD
STEPS_TARGET = 6.0  # issue 37: steps at c=32 at least 6x the generate hook's tokens/s at c=32
KSERVE_TARGET = 5.0  # and at least 5x KServe's
TTFT_TARGET = 2.0  # TTFT p99 at c=32 at most 2x the single-stream figure
PEER = "kserve-generative"


def parse_args() -> argparse.Namespace:
    args = streaming.parse_args(__doc__.splitlines()[0], seconds=10, quick_seconds=4, quick="1 run of 4 s per row",
                                cache="KServe's virtual environment, weights, bodies and logs",
                                rows=[target.key for target in targets()])
    unknown = set(args.rows) - {target.key for target in targets()}
    if unknown:
        sys.exit(f"--rows: no row {', '.join(sorted(unknown))}")
    return args


# The servers and their rows.

def kserve(python: Path) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    command = [str(python), str(PEERS / "continuous_kserve.py"), "--http_port", str(port), "--grpc_port",
               str(grpc_port), "--enable_latency_logging", "False"]
    env = {**launcher.environment(PEERS, PEERS / "vllm_stub", SAMPLE), launcher.ACCESS_LOGS: "", **ONE_THREAD}
    return launcher.Server("KServe 0.21 (OpenAIGenerativeModel: tiny-gpt, tiny-gpt-direct)", command, env, port,
                           grpc_port)


def build(python) -> dict:
    servers = {
        "steps-w": streaming.modelhost("modelhost, tiny-gpt (steps), worker (--replicas 1)", 1, {"tiny-gpt": None},
                                       ONE_THREAD),
        "steps-in": streaming.modelhost("modelhost, tiny-gpt (steps), in-process (--replicas 0)", 0,
                                        {"tiny-gpt": None}, ONE_THREAD),
        "gen-w": streaming.modelhost("modelhost, TinyGPTGenerator (generate), worker (--replicas 1)", 1,
                                     {"tiny-gen": "modelhost_generative.plugin:TinyGPTGenerator"}, ONE_THREAD),
    }
    if python is not None:
        servers["ks"] = kserve(python)
    return servers


def targets() -> list:
    return [streaming.Target("steps-w", "modelhost tiny-gpt (steps), worker", "steps-w", "tiny-gpt", "openai"),
            streaming.Target("steps-in", "modelhost tiny-gpt (steps), in-process", "steps-in", "tiny-gpt", "openai"),
            streaming.Target("gen-w", "modelhost TinyGPTGenerator (generate), worker", "gen-w", "tiny-gen",
                             "openai"),
            streaming.Target("ks", "KServe 0.21, a step through to_thread", "ks", "tiny-gpt", "openai"),
            streaming.Target("ks-direct", "KServe 0.21, a step on the event loop", "ks", "tiny-gpt-direct",
                             "openai")]


def concurrencies(target) -> tuple:
    return (STREAMS,) if target.key in ONLY_MANY else CONCURRENCIES


def body(model: str) -> bytes:
    return json.dumps({"model": model, "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0,
                       "stream": True}).encode()


# The checks.

def check(answer: bytes, reference: str) -> tuple[int, int, str]:
    """The events an answer holds, its text pieces (its first events), and what is wrong with it ("": nothing)."""
    events = streaming.events_of(answer)
    if not events or events[-1] != b"[DONE]":
        return len(events), 0, "it does not end with data: [DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    texts = [chunk["choices"][0]["text"] if chunk.get("choices") else "" for chunk in chunks]
    pieces = next((index for index, text in enumerate(texts) if not text), len(texts))
    if any(texts[pieces:]):
        return len(events), pieces, "a chunk with text follows one without: the pieces are not its first events"
    if "".join(texts) != reference:
        return len(events), pieces, f"its text is {''.join(texts)[:60]!r}..., not the loop's {reference[:60]!r}..."
    if chunks[-1]["choices"][0].get("finish_reason") != "length":
        return len(events), pieces, f"its last chunk is {chunks[-1]!r}, no finish_reason 'length'"
    return len(events), pieces, ""


def preflight(servers: dict, rows: list, reference: dict, bodies: dict, broken: dict) -> dict:
    """Each row's answer once, checked against the loop's text; the pieces of each answer, by row."""
    pieces = {}
    for target in rows:
        if target.server not in servers:
            broken[target.key] = "its server did not start"
        else:
            try:
                status, answer = streaming.post(servers[target.server].url, streaming.path(target),
                                                bodies[target.key].read_bytes(), timeout=120)
                if status != 200:
                    raise ValueError(f"HTTP {status}: {answer[:200]!r}")
                target.events, pieces[target.key], why = check(answer, reference["text"])
                if why:
                    broken[target.key] = why
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                broken[target.key] = f"failed: {exc}"
        said = (f"!! {broken[target.key]}" if target.key in broken else
                f"the loop's text, {reference['tokens']} tokens in {pieces[target.key]} pieces, {target.events} events")
        print(f"  {target.label}: {said}", flush=True)
    return pieces


# The load.

def measure(servers: dict, rows: list, bodies: dict, pieces: dict, runs: int, seconds: float,
            processes: int) -> tuple[dict, dict]:
    """The runs of each (row, c), and each row's stagger at c=32."""
    staggers = {}
    for target in rows:  # the warm-up, all streams at once: one stream's duration under the load, by Little's law
        warm = streaming.one_run(servers, target, bodies[target.key], STREAMS, WARM_UP, processes,
                                 pieces[target.key])
        staggers[target.key] = STREAMS * pieces[target.key] / warm.pieces_per_s if warm.pieces_per_s else 0.0
        print(f"  warm-up, {target.label}: a stream takes about {staggers[target.key]:.2f} s at c={STREAMS}",
              flush=True)
    runs_of = [(target, concurrency) for concurrency in CONCURRENCIES for target in rows
               if concurrency in concurrencies(target)]
    # A c=32 run ramps up for its stagger, and its open streams are read to their end after the seconds: about as
    # long again.
    left = runs * sum(streaming.SETTLE + 0.6 + seconds + (2 * staggers[target.key] if concurrency > 1 else 0)
                      for target, concurrency in runs_of)
    print(f"  about {left / 60:.0f} min of runs from here", flush=True)
    measured = {}
    for round_ in range(runs):
        print(f"  round {round_ + 1}/{runs}", flush=True)
        shift = round_ % len(runs_of)
        for target, concurrency in runs_of[shift:] + runs_of[:shift]:
            time.sleep(streaming.SETTLE)
            stagger = staggers[target.key] if concurrency > 1 else 0.0
            run = streaming.one_run(servers, target, bodies[target.key], concurrency, seconds, processes,
                                    pieces[target.key], stagger)
            measured.setdefault((target.key, concurrency), streaming.Row()).runs.append(run)
    return measured, staggers


# The figures.

def tokens_per_s(measured: dict, key: str, concurrency: int, per_piece: dict) -> float:
    row = measured.get((key, concurrency))
    return row.median("pieces_per_s") * per_piece[key] if row else float("nan")


def render(rows: list, measured: dict, broken: dict, per_piece: dict, staggers: dict) -> list:
    lines = [f"  {'row':<46}{'c':>3}{'tokens/s':>10}{'±%':>5}{'TTFT p50':>10}{'p99 ms':>9}{'CPU µs/token':>14}"
             f"{'client':>8}{'stagger s':>11}"]
    for target in rows:
        for concurrency in concurrencies(target):
            row = measured.get((target.key, concurrency))
            if row is None:
                lines.append(f"  {target.label:<46}{concurrency:>3}   not run: {broken.get(target.key, 'no runs')}")
                continue
            rate, spread, failed = streaming.summary([run.pieces_per_s * per_piece[target.key] for run in row.runs],
                                                     row.runs)
            per_token = statistics.median(1e6 * run.server_cpu_s / max(run.pieces_total * per_piece[target.key], 1)
                                          for run in row.runs)
            stagger = f"{staggers[target.key]:.2f}" if concurrency > 1 else ""
            lines.append(f"  {target.label:<46}{concurrency:>3}{rate:>10,.0f}{spread:>5.0f}{row.ttft(0.5):>10.2f}"
                         f"{row.ttft(0.99):>9.2f}{per_token:>14.0f}{100 * row.median('client_share'):>7.0f}%"
                         f"{stagger:>11}{failed}")
    return lines


def verdicts(rows: list, measured: dict, per_piece: dict, batched: float) -> list:
    labels = {target.key: target.label for target in targets()}
    lines = []

    def said(ratio: float, met: bool) -> str:
        return "not measured" if ratio != ratio else ("met" if met else "NOT met")  # nan: a row is missing

    for key in ("steps-w", "steps-in"):
        if all(target.key != key for target in rows):
            continue
        mine = tokens_per_s(measured, key, STREAMS, per_piece)
        for versus, target in (("gen-w", STEPS_TARGET), ("ks", KSERVE_TARGET), ("ks-direct", KSERVE_TARGET)):
            theirs = tokens_per_s(measured, versus, STREAMS, per_piece) if (versus, STREAMS) in measured else 0
            ratio = mine / theirs if theirs else float("nan")
            lines.append(f"  {labels[key]} / {labels[versus]}, tokens/s at c={STREAMS}: {ratio:.2f}x; target (at "
                         f"least {target:g}x): {said(ratio, ratio >= target)}")
        one, many = measured.get((key, 1)), measured.get((key, STREAMS))
        if one and many:
            ratio = many.ttft(0.99) / one.ttft(0.5)
            lines.append(f"  {labels[key]}, TTFT p99 at c={STREAMS} / p50 at c=1: {many.ttft(0.99):.2f} / "
                         f"{one.ttft(0.5):.2f} ms = {ratio:.2f}x (over p99 at c=1, {one.ttft(0.99):.2f} ms: "
                         f"{many.ttft(0.99) / one.ttft(0.99):.2f}x); target (at most {TTFT_TARGET:g}x): "
                         f"{said(ratio, ratio <= TTFT_TARGET)}")
        else:
            lines.append(f"  {labels[key]}, TTFT: not measured")
    return lines + ceilings(measured, per_piece, batched)


def ceilings(measured: dict, per_piece: dict, batched: float) -> list:
    """What the batched step alone, with no server, allows of the targets."""
    step_ms = 1e3 * STREAMS / batched
    lines = [f"  ceilings: the batched step alone ({batched:.0f} tokens/s) is a step of {STREAMS} sequences every "
             f"{step_ms:.2f} ms; a request arriving during one waits for the rest of it (at p99 nearly all) before "
             "its own begin and first step"]
    if ("ks-direct", STREAMS) in measured:
        theirs = tokens_per_s(measured, "ks-direct", STREAMS, per_piece)
        lines.append(f"  ceilings: {KSERVE_TARGET:g}x KServe's step on the event loop ({theirs:.0f} tokens/s) is "
                     f"{KSERVE_TARGET * theirs:.0f} tokens/s, {KSERVE_TARGET * theirs / batched:.2f}x the batched step "
                     "alone")
    return lines


def batched_loop() -> float:
    output, _ = cpu.run_counted([sys.executable, str(PEERS / "batched_loop.py"), "--sequences", str(STREAMS),
                                 "--max-tokens", str(TOKENS), "--runs", "3"], {**os.environ, **ONE_THREAD})
    return json.loads(output.strip().splitlines()[-1])["tokens_per_s"]


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    print("command: " + shlex.join(["python", "bench/continuous.py", *sys.argv[1:]]))
    cache = environment.prepare_cache(args.cache)
    print(f"cache (KServe's environment, the sample's weights, bodies, server logs): {cache}")
    python = None
    if any(target.server == "ks" for target in targets() if target.key in args.rows):
        try:
            python = environment.venv_python(cache, PEER)
        except RuntimeError as exc:
            print(f"!! KServe could not be installed, going on without it: {exc}")
    os.environ["MODELHOST_CACHE_DIR"] = str(cache / "models")  # the sample's weights, for the loop and the servers
    os.environ.update(ONE_THREAD)  # the servers, their workers and the loop: the docstring says why
    print("\n".join(["", time.strftime("%Y-%m-%d %H:%M %Z"), *streaming.versions({}),
                     *([environment.peer_line(PEER, python, environment.VERSIONS[PEER])] if python else []),
                     "OPENBLAS_NUM_THREADS=1 for every server and the plain loop; per-request logging off: modelhost "
                     "--log-level WARNING; KServe --enable_latency_logging False with its uvicorn.access, kserve.trace "
                     "and kserve loggers at WARNING"]))
    reference = streaming.plain_loop(ONE_THREAD, 3, quiet=False)
    print(f"\nthe plain loop (python -m modelhost_generative.loop), one stream, no server: {reference['tokens']} "
          f"tokens, {reference['tokens_per_s']:.0f} tokens/s, first token {reference['ttft_ms']:.2f} ms (median of 3)")
    batched = batched_loop()
    print(f"the batched step alone (peers/batched_loop.py), {STREAMS} sequences together, no server: "
          f"{batched:.0f} tokens/s (median of 3): no c={STREAMS} row can pass it here", flush=True)

    rows = [target for target in targets() if target.key in args.rows]
    servers = {key: server for key, server in build(python).items() if any(row.server == key for row in rows)}
    servers = streaming.start(servers, cache, "continuous")
    try:
        broken: dict = {}
        folder = cache / "bodies"
        folder.mkdir(parents=True, exist_ok=True)
        bodies = {}
        for target in rows:
            bodies[target.key] = folder / f"continuous-{target.model}.json"
            bodies[target.key].write_bytes(body(target.model))
        print(f"\nchecking each row once: greedy, max_tokens {TOKENS}, {PROMPT!r}", flush=True)
        pieces = preflight(servers, rows, reference, bodies, broken)
        live = [target for target in rows if target.key not in broken]
        per_piece = {key: reference["tokens"] / count for key, count in pieces.items() if count}
        runs = sum(len(concurrencies(target)) for target in live)
        print(f"{runs} rows and c x {args.runs} runs x {args.seconds} s (c={STREAMS}: after a ramp of its stagger), "
              f"interleaved, after a {WARM_UP} s warm-up of each row at c={STREAMS}", flush=True)
        measured, staggers = measure(servers, live, bodies, pieces, args.runs, args.seconds, args.client_processes)
        lines = [f"\ntiny-gpt, greedy, {TOKENS} tokens from {PROMPT!r}: POST /openai/v1/completions, \"stream\": "
                 f"true; medians of {args.runs} interleaved run(s) of {args.seconds} s; tokens/s: pieces/s x the "
                 "loop's tokens over an answer's pieces; ±%: spread of tokens/s over the runs; TTFT: from the request "
                 "to its first piece; CPU µs/token: the row's server (its worker included); client: the load "
                 f"generator's share of one core; stagger: sse_load --stagger at c={STREAMS}, the row's stream "
                 "duration from its warm-up", *render(rows, measured, broken, per_piece, staggers),
                 "", "targets (issue 37):", *verdicts(rows, measured, per_piece, batched),
                 table.others(measured, "the load generator")]
        print("\n".join(lines), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(f"\ntotal {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

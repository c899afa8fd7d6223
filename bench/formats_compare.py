"""Model files served with no code: modelhost's format runtimes against MLServer's, and its ONNX runtime against the
sample's hand-written plugin and ONNX Runtime alone, under wrk.

    python bench/formats_compare.py            # 3 interleaved runs of 4 s per row, c = 1, 8, 64 (about 8 minutes)
    python bench/formats_compare.py --quick    # 1 run of 2 s per row, c = 8 only (about 1 minute)

Options: --runs N and --seconds S override either mode; --save also writes
everything printed to bench/results/DATE-formats-compare.txt (-quick.txt with
--quick); --no-pause leaves the servers not under load running (by default
they are stopped with SIGSTOP for each run, as ray_compare.py does, so that
two cores are not shared with idle servers); --cache DIR (default bench/.cache).
Run it from the repository root with modelhost, the sample and the format
plugins installed (bench/README.md).

1. scikit-learn and XGBoost: a RandomForestClassifier (model.joblib) and an
   XGBClassifier (model.json), trained here on synthetic iris-sized data, served
   by `modelhost serve --model_dir DIR --model_name NAME --model_format F`
   (as shipped, batching up to 32 requests, and with --max_batch_size 1) and by
   MLServer 1.7.1's mlserver-sklearn and mlserver-xgboost runtimes with their
   default settings (one inference worker), from the same files, one V2 JSON
   row of 4 features.
2. ONNX: the sample's AlexNet file as model.onnx under modelhost's ONNX
   runtime, against the sample's hand-written plugin (`--model custom-model`)
   on the same file, and ONNX Runtime's session.run alone in this process; one
   V2 binary FP32 [1,3,224,224] image.
"""

import argparse
import dataclasses
import io
import json
import os
import shlex
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from modelhost_alexnet import network

import ray_compare
from peers import cases as casebook
from peers import environment, formats, raw_ort, sessions, table, wrk
from peers import servers as launcher

BENCH = Path(__file__).resolve().parent
SETTLE = 0.5  # seconds of quiet before each run
ONNX_TARGET = 0.10  # the ONNX runtime within 10% of the hand-written plugin's req/s


class Tee(io.TextIOBase):
    """Everything printed goes to the terminal and, with --save, into a string kept for the results file."""

    def __init__(self, stream):
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    environment.add_run_arguments(parser, 3, "1 run of 2 s per row, c = 8 only")
    parser.add_argument("--save", action="store_true",
                        help="also write the output to bench/results/DATE-formats-compare.txt "
                             "(-quick.txt with --quick)")
    parser.add_argument("--no-pause", action="store_true",
                        help="leave the servers not under load running (default: SIGSTOP them during each run)")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache",
                        help="the peers' virtual environments, models, bodies and logs (default: bench/.cache)")
    args = parser.parse_args()
    environment.set_run_lengths(args, 3)
    args.concurrencies = (8,) if args.quick else (1, 8, 64)
    return args


def build(models: formats.Models, folder: Path, concurrencies: tuple) -> list:
    """The three cases, each row with what its server's right answer holds."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    json_headers = casebook.JSON
    sklearn_body = write("formats-sklearn-v2.json", formats.v2_tabular(models.row, "FP64"))
    xgboost_body = write("formats-xgboost-v2.json", formats.v2_tabular(models.row.astype(np.float32), "FP32"))
    binary, binary_headers = casebook.v2_binary(formats.ONNX_INPUT, casebook.IMAGE)
    image = write("formats-image-v2.bin", binary)
    logits = sessions.run(sessions.alexnet_session(), casebook.IMAGE)
    scores, _ = sessions.top5(logits)
    Target = formats.Target
    sklearn_path = f"/v2/models/{formats.SKLEARN}/infer"
    xgboost_path = f"/v2/models/{formats.XGBOOST}/infer"
    onnx_path, handwritten_path = f"/v2/models/{formats.ALEXNET}/infer", f"/v2/models/{formats.HANDWRITTEN}/infer"
    labels, probabilities = ("predict", models.labels), ("predict", models.probabilities)
    row = f"one row of 4 features ({sklearn_body.stat().st_size} bytes)"
    return [
        casebook.Case("sklearn", f"scikit-learn RandomForestClassifier (50 trees, depth 8), model.joblib, V2 JSON FP64 "
                      f"[1,4]: {row}, the label out", concurrencies, [
            Target("mh-sklearn", sklearn_path, sklearn_body, json_headers, expected=labels),
            Target("mh-sklearn-unbatched", sklearn_path, sklearn_body, json_headers, expected=labels),
            Target("mlserver", sklearn_path, sklearn_body, json_headers, versus="mh-sklearn", expected=labels),
        ], ()),
        # MLServer loads an XGBClassifier's file into XGBClassifier and answers its predict, the argmax of the
        # probabilities that modelhost (Booster.predict, as KServe's xgbserver) answers: the same trees' work.
        casebook.Case("xgboost", f"XGBoost XGBClassifier (50 trees, depth 6), model.json, V2 JSON FP32 [1,4]: "
                      f"{row}, the probabilities (modelhost) or the label (MLServer) out", concurrencies, [
            Target("mh-xgboost", xgboost_path, xgboost_body, json_headers, expected=probabilities),
            Target("mh-xgboost-unbatched", xgboost_path, xgboost_body, json_headers, expected=probabilities),
            Target("mlserver", xgboost_path, xgboost_body, json_headers, versus="mh-xgboost",
                   expected=("predict", models.xgboost_labels)),
        ], ()),
        casebook.Case("onnx", f"AlexNet, one ONNX file, V2 binary FP32 [1,3,224,224] ({len(binary):,} bytes): all 1000 "
                      "logits out (ONNX runtime), the top 5 (hand-written)", concurrencies, [
            Target("mh-onnx", onnx_path, image, binary_headers, expected=("output", logits)),
            Target("mh-handwritten", handwritten_path, image, binary_headers, versus="mh-onnx",
                   expected=("scores", scores)),
        ], ()),
    ]


def servers(python, repo: Path, models: formats.Models, cache: Path) -> dict:
    """Every server, as ray_compare.Server (which SIGSTOPs its whole process tree for another's run)."""
    unbatched = ["--max_batch_size", "1"]
    made = {
        "mh-sklearn": formats.modelhost("modelhost sklearn (default)", "--model_dir", str(models.sklearn_dir),
                                        "--model_name", formats.SKLEARN, "--model_format", "sklearn"),
        "mh-sklearn-unbatched": formats.modelhost("modelhost sklearn (--max_batch_size 1)", "--model_dir",
                                                  str(models.sklearn_dir), "--model_name", formats.SKLEARN,
                                                  "--model_format", "sklearn", *unbatched),
        "mh-xgboost": formats.modelhost("modelhost xgboost (default)", "--model_dir", str(models.xgboost_dir),
                                        "--model_name", formats.XGBOOST, "--model_format", "xgboost"),
        "mh-xgboost-unbatched": formats.modelhost("modelhost xgboost (--max_batch_size 1)", "--model_dir",
                                                  str(models.xgboost_dir), "--model_name", formats.XGBOOST,
                                                  "--model_format", "xgboost", *unbatched),
        "mh-onnx": formats.modelhost("modelhost ONNX runtime (--model_dir, default)", "--model_dir",
                                     str(models.onnx_dir), "--model_name", formats.ALEXNET, "--model_format", "onnx"),
        "mh-handwritten": formats.modelhost("modelhost hand-written plugin (sample)", "--model", formats.HANDWRITTEN),
    }
    if python:
        server = launcher.mlserver(python, cache / "formats" / "mlserver", access_logs=False)
        server.command[-1] = str(repo)  # compare.py's launcher, on this script's repository
        made["mlserver"] = server
    return {key: ray_compare.Server(**{field.name: getattr(server, field.name)
                                       for field in dataclasses.fields(launcher.Server)})
            for key, server in made.items()}


def post(url: str, body: Path, headers: dict) -> dict:
    request = urllib.request.Request(url, data=body.read_bytes(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def preflight(cases: list, running: dict) -> dict:
    """One request per row, checked against what its server should answer; {(case, row): why} for failures."""
    broken = {}
    for case in cases:
        for target in case.targets:
            if target.server not in running:
                continue
            server = running[target.server]
            try:
                document = post(server.url + target.path, target.body, target.headers)
                right = dataclasses.replace(case, expected=target.expected).answer_is_right(document)
                reason = None if right else f"answered, but not what the model computes here: {str(document)[:300]}"
            except urllib.error.HTTPError as exc:
                reason = f"failed: HTTP {exc.code}: {exc.read()[:300]!r}"
            except (OSError, ValueError) as exc:
                reason = f"failed: {exc}"
            if reason:
                broken[case.key, target.key] = reason
                print(f"!! {case.key}: {server.label} {reason}")
    return broken


def alone(running: dict, session, seconds: float) -> float:
    """ONNX Runtime's session.run back to back on one image in this process, every server stopped meanwhile."""
    for server in running.values():
        server.pause()
    time.sleep(SETTLE)
    return raw_ort.throughput(session, casebook.IMAGE, seconds)


def measure(cases: list, running: dict, broken: dict, args, session) -> tuple[dict, dict]:
    """Every row's runs, round-robin within each case and concurrency, each round starting at another server;
    and ONNX Runtime alone, measured in each round just before the ONNX rows at each c, so the limit drifts with
    the machine as they do."""
    pause = not args.no_pause
    groups = [(case.key, c, [target for target in case.targets
                             if target.server in running and (case.key, target.key) not in broken])
              for case in cases for c in case.concurrencies]
    count = sum(len(targets) for _, _, targets in groups)
    print(f"\n{count} rows x {args.runs} runs x {args.seconds} s, round-robin over servers (about "
          f"{count * args.runs * (args.seconds + SETTLE + 0.3) / 60:.0f} min), after a 1 s warm-up of each row",
          flush=True)
    for _, _, targets in groups:
        for target in targets:
            ray_compare.focus(running, target.server, pause)
            time.sleep(SETTLE)
            wrk.run(running[target.server].url + target.path, target.body, target.headers, 8, 1)
    rows, limits = {}, {}
    for round_ in range(args.runs):
        print(f"  round {round_ + 1}/{args.runs}", flush=True)
        for key, c, targets in groups:
            if key == "onnx":
                limits.setdefault(c, []).append(alone(running, session, args.seconds))
            shift = round_ % max(len(targets), 1)
            for target in targets[shift:] + targets[:shift]:
                ray_compare.focus(running, target.server, pause)
                time.sleep(SETTLE)
                run, _ = ray_compare.one_run(running[target.server], target, c, args.seconds)
                rows.setdefault((key, c, target.key), table.Row([])).runs.append(run)
    for server in running.values():
        server.resume()
    return rows, limits


def ratios(rows: dict, case: str, over: str, under: str, concurrencies: tuple, limit=None) -> str:
    cells = []
    for c in concurrencies:
        mine = rows.get((case, c, over))
        theirs = limit[c] if limit else (rows[case, c, under].rps if (case, c, under) in rows else None)
        if mine and theirs:
            cells.append(f"c={c}: {mine.rps / theirs:.2f}x ({mine.rps:,.0f} / {theirs:,.0f})")
    return ", ".join(cells) or "not run"


def summary(rows: dict, limits: dict, concurrencies: tuple) -> list:
    limit = {c: statistics.median(rates) for c, rates in limits.items()}
    lines = ["req/s ratios (medians; the first figure's server over the second's):"]
    for case, name in (("sklearn", "scikit-learn"), ("xgboost", "XGBoost")):
        lines.append(f"  {name}: modelhost (default) / MLServer: "
                     + ratios(rows, case, f"mh-{case}", "mlserver", concurrencies))
        lines.append(f"  {name}: modelhost --max_batch_size 1 / MLServer: "
                     + ratios(rows, case, f"mh-{case}-unbatched", "mlserver", concurrencies))
        lines.append(f"  {name}: modelhost (default) / modelhost --max_batch_size 1: "
                     + ratios(rows, case, f"mh-{case}", f"mh-{case}-unbatched", concurrencies))
    lines.append(f"  ONNX runtime / hand-written plugin (target: {1 - ONNX_TARGET:.2f}-{1 + ONNX_TARGET:.2f}): "
                 + ratios(rows, "onnx", "mh-onnx", "mh-handwritten", concurrencies))
    if limit:
        lines.append("  ONNX Runtime alone, session.run on one image, measured in each round before the ONNX rows "
                     "at each c, images/s: " + ", ".join(
                         f"c={c}: {limit[c]:,.0f} (of {', '.join(f'{rate:.0f}' for rate in limits[c])})"
                         for c in sorted(limit)))
        lines.append("  ONNX runtime / ONNX Runtime alone: "
                     + ratios(rows, "onnx", "mh-onnx", "", concurrencies, limit))
        lines.append("  hand-written plugin / ONNX Runtime alone: "
                     + ratios(rows, "onnx", "mh-handwritten", "", concurrencies, limit))
    return lines


def main() -> None:
    args = parse_args()
    tee = sys.stdout = Tee(sys.stdout)
    began, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"command: {shlex.join(['python', 'bench/formats_compare.py', *sys.argv[1:]])}")
    cache = environment.prepare_cache(args.cache)
    print(f"cache (virtual environments, models, bodies, server logs): {cache}")
    environment.ensure_tools()
    pythons, missing = {}, {}
    try:
        pythons["mlserver-formats"] = environment.venv_python(cache, "mlserver-formats")
    except RuntimeError as exc:
        print(f"!! MLServer could not be installed, going on without it: {exc}")
        missing["mlserver"] = "could not be installed (said why at the top)"
    # The sample builds AlexNet into MODELHOST_CACHE_DIR once; both modelhost servers and ONNX Runtime alone read it.
    os.environ["MODELHOST_CACHE_DIR"] = str(cache / "models")
    os.environ[sessions.ALEXNET_ENV] = str(network.model_path())
    models = formats.train(cache / "formats", network.model_path())
    repo = formats.mlserver_repository(cache / "formats", models)
    print("\n".join(["", date, *environment.versions(pythons),
                     "per-request logging off everywhere: modelhost --log-level WARNING; MLServer \"debug\": false",
                     f"models: {models.sklearn_dir}, {models.xgboost_dir}, {models.onnx_dir} (model.onnx -> "
                     f"{network.model_path()}); MLServer's repository: {repo}"]))
    session = sessions.alexnet_session()
    print(f"ONNX Runtime alone, AlexNet batch 1, before any server starts: "
          f"{raw_ort.throughput(session, casebook.IMAGE, 1.0 if args.quick else 3.0):,.0f} images/s")
    cases = build(models, cache / "bodies", args.concurrencies)
    running = servers(pythons.get("mlserver-formats"), repo, models, cache)
    labels = {key: server.label for key, server in running.items()}
    commands = [f"  {server.label}: {formats.shown(server)}" for server in running.values()]
    print(f"\nstarting the servers (logs in {cache / 'logs'})", flush=True)
    for key, why in launcher.launch(running, cache / "logs" / "formats").items():
        missing[key] = why
        print(f"!! {why}")
    try:
        broken = preflight(cases, running)
        missing.update(broken)
        rows, limits = measure(cases, running, broken, args, session)
    finally:
        for server in running.values():
            server.stop()

    print(f"\nmedians of {args.runs} interleaved run(s) of {args.seconds} s each, wrk with one thread and c "
          "connections, " + ("the other servers stopped (SIGSTOP) during each run" if not args.no_pause
                             else "the other servers running idle beside each run (--no-pause)") + ";\n"
          "mh/peer: on MLServer's rows, modelhost (default)'s req/s over MLServer's; on the hand-written plugin's row, "
          "the ONNX runtime's over it;\n±%: spread of req/s over the runs; CPU s: the server's whole process tree "
          "during one run\n")
    print("\n".join(table.render(cases, labels, rows, missing)))
    print("\n".join(["", *summary(rows, limits, args.concurrencies), table.others(rows), "", "the servers:",
                     *commands]))
    print(f"total {time.monotonic() - began:.0f} s")
    if args.save:
        path = BENCH / "results" / f"{time.strftime('%Y-%m-%d')}-formats-compare{'-quick' if args.quick else ''}.txt"
        path.write_text(tee.kept.getvalue())
        print(f"saved: {path}")


if __name__ == "__main__":
    main()

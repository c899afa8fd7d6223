"""compare.py's figures as a chart: req/s and p99 per server and concurrency, one panel pair per case.

    python bench/peers/chart.py RESULTS.txt OUT.svg   # the chart of a run compare.py printed, as saved in results/

compare.py writes one on every run (``--chart``). SVG, not PNG: the text stays
text (``svg.fonttype`` none) and the output is deterministic (no date, a fixed
hash salt), so a chart is small (about 170 KB for a full run, its PNG 380 KB),
diffs line by line, and the test reads its legend as XML. Needs matplotlib and nothing else of the bench, so that this file
also runs on its own.
"""

import itertools
import math
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never a window: the bench runs headless

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

MINE = ["#08519c", "#2ca02c", "#6a3d9a", "#17becf", "#1a1a1a", "#9e9ac8"]  # modelhost's rows: solid, thick
PEERS = ["#d95f02", "#7f7f7f", "#e7298a", "#a6761d", "#e6ab02", "#8c564b"]  # the peers': dashed, thin
LOG_SPREAD = 10  # a panel whose largest value is this many times its smallest gets a log scale


@dataclass
class Point:
    case: str  # the case's title, as the table prints it
    server: str  # the row's label, as the table prints it ("KServe ModelServer (in-process), base64")
    concurrency: int
    rps: float  # medians over the runs
    p99_ms: float


@dataclass
class Results:
    command: str
    date: str
    points: list[Point]
    limits: dict[int, float] = field(default_factory=dict)  # ONNX Runtime alone, images/s by batch (= c)
    limit_case: str = ""  # the case whose req/s panel draws those limits: AlexNet's
    note: str = ""  # how the figures were taken ("medians of 3 runs of 4 s")


def note(runs: int, seconds: int) -> str:
    """How a run's figures were taken, as the chart's title says it."""
    return f"medians of {runs} run{'s' if runs != 1 else ''} of {seconds} s"


def is_mine(server: str) -> bool:
    return server.startswith("modelhost")


def styles(servers: list[str]) -> dict[str, dict]:
    """One look per server across all panels: modelhost's rows stand out, the peers' recede."""
    mine = [server for server in servers if is_mine(server)]
    theirs = [server for server in servers if not is_mine(server)]
    looks = {server: dict(color=MINE[i % len(MINE)], lw=2.4, ls="-", marker="o", ms=6, zorder=3)
             for i, server in enumerate(mine)}
    looks.update({server: dict(color=PEERS[i % len(PEERS)], lw=1.4, ls="--", marker="s", ms=5, zorder=2)
                  for i, server in enumerate(theirs)})
    return looks


def minor_label(value: float, _) -> str:
    """A log axis's minor ticks: 2 and 5 of each decade labelled (0.2, 0.5, 20, 50), the others not."""
    mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return f"{value:g}" if round(mantissa, 6) in (2, 5) else ""


def panel(ax, points: list[Point], what: str, looks: dict, limits: dict[int, float]) -> None:
    """One axis: x = concurrency (log 2, ticks at the measured c), one line per server."""
    for server in dict.fromkeys(point.server for point in points):
        mine = sorted((p for p in points if p.server == server), key=lambda p: p.concurrency)
        ax.plot([p.concurrency for p in mine], [getattr(p, what) for p in mine], label=server, **looks[server])
    for batch, rate in sorted(limits.items()):
        ax.axhline(rate, color="black", lw=1.2, ls=(0, (1, 1.5)) if batch == 1 else (0, (4, 2)), zorder=1)
        ax.annotate(f"ONNX Runtime alone, batch {batch}: {rate:,.0f} images/s", (0.01, rate),
                    xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=7.5)
    values = [getattr(p, what) for p in points] + list(limits.values())
    if values and min(values) > 0 and max(values) / min(values) >= LOG_SPREAD:
        ax.set_yscale("log")
        ax.margins(y=0.12)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 200, not 2x10^2
        ax.yaxis.set_minor_formatter(FuncFormatter(minor_label))
    else:
        ax.set_ylim(bottom=0, top=max(values, default=1) * 1.12)
    concurrencies = sorted({p.concurrency for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(concurrencies, [f"c={c}" for c in concurrencies])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(concurrencies) / 1.6, max(concurrencies) * 1.6)
    ax.set_ylabel({"rps": "requests/s (median)", "p99_ms": "p99 latency, ms"}[what], fontsize=8.5)
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(labelsize=8)


def write(results: Results, path: Path) -> Path:
    """The chart of ``results`` into ``path`` (its suffix picks the format; .svg as intended); returns the path."""
    cases = list(dict.fromkeys(point.case for point in results.points))
    servers = sorted(dict.fromkeys(point.server for point in results.points), key=lambda s: not is_mine(s))
    looks = styles(servers)
    # Text as text, and a fixed salt for the ids that would otherwise be random.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "modelhost-bench",
                                "font.sans-serif": ["DejaVu Sans", "Arial"]}):
        figure = Figure(figsize=(11, 1.6 + 2.9 * len(cases)), layout="constrained")
        # A header (title, legend), then one row of two panels per case.
        top, *rows = figure.subfigures(len(cases) + 1, 1, squeeze=False,
                                       height_ratios=[1.6] + [2.9] * len(cases))[:, 0]
        for sub, case in zip(rows, cases):
            sub.suptitle(textwrap.fill(case, 110), fontsize=9.5, fontweight="bold")
            points = [point for point in results.points if point.case == case]
            limits = results.limits if case == results.limit_case else {}
            left, right = sub.subplots(1, 2)
            panel(left, points, "rps", looks, limits)
            panel(right, points, "p99_ms", looks, {})
        handles = [Line2D([], [], label=server, **looks[server]) for server in servers]
        top.legend(handles=handles, loc="lower center", ncols=3, fontsize=8.5, frameon=False)
        top.suptitle(f"{results.command}, {results.date}\nrequests/s and p99 latency per server and concurrency "
                     f"(modelhost solid, peers dashed){', ' + results.note if results.note else ''}", fontsize=11)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    return path


# compare.py's output (peers/table.py): a case's title flush left, its rows indented, a blank line after the table.
ROW = re.compile(r"^  (?P<server>.+?)\s+(?P<c>\d+)\s+(?P<rps>\d+)\s+\d+\s+\d+\.\d+\s+(?P<p99>\d+\.\d+)(\s|$)")
LIMITS = re.compile(r"^ONNX Runtime alone, measured in each round.*images/s: (.*)$", re.M)
DATE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?: \S+)?)$", re.M)
RUNS = re.compile(r"^medians of (\d+) interleaved run\(s\) of (\d+) s each", re.M)


def from_table(text: str) -> Results:
    """A run's figures from what compare.py printed, as kept in bench/results/."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  server (mode)"))
    points, case = [], ""
    for line in itertools.takewhile(str.strip, lines[start + 1:]):
        if not line.startswith(" "):
            case = line
        elif match := ROW.match(line):
            points.append(Point(case, match["server"], int(match["c"]), float(match["rps"]), float(match["p99"])))
    found, runs, date = LIMITS.search(text), RUNS.search(text), DATE.search(text)
    limits = {int(batch): float(rate.replace(",", ""))
              for batch, rate in re.findall(r"batch (\d+): ([\d,]+)", found[1] if found else "")}
    command = re.search(r"^command: (.+)$", text, re.M)
    # Before compare.py printed its command, its output showed one flag: --access-logs.
    flags = " --access-logs" if "(--access-logs)" in text else ""
    return Results(command=command[1] if command else f"python bench/compare.py{flags}",
                   date=date[1] if date else "(no date recorded)", points=points, limits=limits,
                   limit_case=next((p.case for p in points if p.case.startswith("AlexNet")), ""),
                   note=note(int(runs[1]), int(runs[2])) if runs else "")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.splitlines()[2].strip())
    print(write(from_table(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))

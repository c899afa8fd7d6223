"""The figures: medians over the interleaved runs, one row per server, case and concurrency."""

import statistics
from dataclasses import dataclass

from .wrk import Result

HEADER = (f"  {'server (mode)':<48}{'c':>4}{'req/s':>9}{'±%':>5}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'mh/peer':>9}{'CPU s':>7}{'CPU ms/req':>11}")


@dataclass
class Run:
    result: Result
    server_cpu_s: float  # the server's process tree during the run
    other_cpu_s: float  # everything else on the machine but the load generator: should be near zero


@dataclass
class Row:
    runs: list

    def median(self, field: str) -> float:
        return statistics.median(getattr(run.result, field) for run in self.runs)

    @property
    def rps(self) -> float:
        return self.median("requests_per_s")

    def line(self, label: str, concurrency: int, versus=None) -> str:
        rates = [run.result.requests_per_s for run in self.runs]
        spread = 100 * (max(rates) - min(rates)) / self.rps if self.rps else 0
        cpu = statistics.median(run.server_cpu_s for run in self.runs)
        per_request = statistics.median(1000 * run.server_cpu_s / max(run.result.requests, 1) for run in self.runs)
        ratio = f"{versus.rps / self.rps:.2f}x" if versus and self.rps else ""
        errors = sum(run.result.errors for run in self.runs)
        warning = f"  {errors} errors!" if errors else ""
        return (f"  {label:<48}{concurrency:>4}{self.rps:>9.0f}{spread:>5.0f}{self.median('p50_ms'):>9.2f}"
                f"{self.median('p99_ms'):>9.2f}{ratio:>9}{cpu:>7.2f}{per_request:>11.2f}{warning}")


def label(labels: dict, target) -> str:
    return labels.get(target.server, target.server) + (f", {target.tag}" if target.tag else "")


def render(cases, labels: dict, rows: dict, skipped: dict) -> list[str]:
    """``rows`` maps (case key, concurrency, server key) to a Row.

    ``skipped`` says why a row is missing, by server key or by (case key, server key).
    """
    lines = [HEADER]
    for case in cases:
        lines.append(case.title)
        for concurrency in case.concurrencies:
            for target in case.targets:
                name = label(labels, target)
                row = rows.get((case.key, concurrency, target.key))
                if row is None:
                    why = skipped.get((case.key, target.key)) or skipped.get(target.server, "no runs")
                    lines.append(f"  {name:<48}{concurrency:>4}   not run: {why}")
                    continue
                lines.append(row.line(name, concurrency, rows.get((case.key, concurrency, target.versus))))
        lines += sorted({f"  {target.tag}: {target.payload}" for target in case.targets if target.payload})
    return lines


def others(rows: dict, load: str = "wrk or h2load") -> str:
    """How much CPU strangers took during the runs (not the server, not ``load``, the load generator): a busy
    machine makes every figure suspect."""
    spent = [run.other_cpu_s for row in rows.values() for run in row.runs]
    if not spent:
        return ""
    return (f"other processes (not the server under test, not {load}) used "
            f"{statistics.median(spent):.2f} CPU s per run in the median, {max(spent):.2f} at most")

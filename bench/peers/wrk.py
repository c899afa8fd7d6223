"""One wrk run: POST a body file at a URL with N connections, and what wrk --latency reports."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import cpu

SCRIPT = Path(__file__).resolve().parent.parent / "lua" / "post.lua"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers and socket errors together; h2load: calls without a whole right answer
    loader_cpu_s: float  # the load generator's own CPU time (wrk's, h2load's), to tell it apart from the server's


def run(url: str, body: Path, headers: dict, connections: int, seconds: int) -> Result:
    env = {**os.environ, "WRK_BODY": str(body), "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    # One wrk thread: on two cores the other core is the server's; more threads would only compete with it.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(SCRIPT), url]
    output, wrk_cpu_s = cpu.run_counted(command, env)
    return parse(output, wrk_cpu_s)


def parse(output: str, loader_cpu_s: float) -> Result:
    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M).groups()
        return float(value) * UNITS[unit]

    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(re.search(r"(\d+) requests in", output).group(1)),
        errors=(int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0),
        loader_cpu_s=loader_cpu_s,
    )

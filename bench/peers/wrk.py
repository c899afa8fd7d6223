"""One wrk run: POST a body file at a URL with N connections, and what wrk --latency reports."""

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "lua" / "post.lua"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers and socket errors together
    wrk_cpu_s: float  # wrk's own CPU time, to tell it apart from the server's and from strangers'


def run(url: str, body: Path, headers: dict, connections: int, seconds: int) -> Result:
    env = {**os.environ, "WRK_BODY": str(body), "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    # One wrk thread: on two cores the other core is the server's; more threads would only compete with it.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(SCRIPT), url]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    # wait4 rather than Popen.wait: it also gives wrk's own CPU time. Popen is told it has been reaped.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode:
        raise RuntimeError(f"wrk exited with {process.returncode}: {output.strip()}")
    return parse(output, usage.ru_utime + usage.ru_stime)


def parse(output: str, wrk_cpu_s: float) -> Result:
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
        wrk_cpu_s=wrk_cpu_s,
    )

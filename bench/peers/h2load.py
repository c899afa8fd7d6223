"""One h2load run: unary gRPC calls, a frame file POSTed over HTTP/2 by N clients, as wrk.py's Result.

h2load (nghttp2's) speaks HTTP/2 from C, as wrk speaks HTTP/1.1, so the
client costs the servers' core as little in both. It knows nothing of gRPC:
it counts an HTTP 200 as a success even when the call failed, since a call's
status travels in the trailers. compare.py's preflight therefore makes one
real gRPC call to each target first, checks the answer, and hands its length
on the wire here: a right answer's DATA is exactly that many bytes and a
failed call has none, so the DATA bytes h2load received, divided by that
length, count the calls answered; the rest are errors.
"""

import re
import statistics
import tempfile
from pathlib import Path

from . import cpu
from .wrk import Result


def run(url: str, body: Path, headers: dict, answer_bytes: int, clients: int, seconds: int) -> Result:
    """``clients`` connections with one stream each (-m1), so that c means what it means for wrk."""
    with tempfile.TemporaryDirectory() as folder:
        # Its per-request log gives the percentiles; h2load itself prints only min, max, mean and sd.
        # No --warm-up-time: the server's CPU is counted over the whole run, so its calls must be too.
        log = Path(folder) / "requests.tsv"
        command = ["h2load", "-t1", f"-c{clients}", "-m1", f"-D{seconds}", f"--log-file={log}", "-d", str(body),
                   *(f"-H{name}: {value}" for name, value in headers.items()), url]
        output, h2load_cpu_s = cpu.run_counted(command)
        return parse(output, log.read_text(), answer_bytes, h2load_cpu_s)


def parse(output: str, log: str, answer_bytes: int, loader_cpu_s: float) -> Result:
    """``log``: one line per call, tab-separated: its start (µs since the epoch), HTTP status (-1: the
    stream failed), µs until the end of its answer."""
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", output).group(1))
    ok = int(re.search(r"status codes: (\d+) 2xx", output).group(1))
    data = int(re.search(r"\((\d+)\) data", output).group(1))
    times = [int(fields[2]) / 1000 for fields in map(str.split, log.splitlines()) if fields[1] != "-1"]
    if len(times) < 2:
        raise RuntimeError(f"h2load got {len(times)} answers: {output.strip()}")
    percentiles = statistics.quantiles(times, n=100, method="inclusive")
    return Result(
        requests_per_s=float(re.search(r"finished in \S+, ([\d.]+) req/s", output).group(1)),
        p50_ms=percentiles[49],
        p99_ms=percentiles[98],
        requests=done,
        errors=done - min(ok, data // answer_bytes),
        loader_cpu_s=loader_cpu_s,
    )

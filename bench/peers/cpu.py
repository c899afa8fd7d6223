"""CPU time, in seconds: a server's whole process tree and the whole machine's from /proc, a load generator's own."""

import os
import subprocess
from pathlib import Path
from typing import Optional

TICK = os.sysconf("SC_CLK_TCK")


def tree_seconds(pid: int, descendants: bool = True) -> float:
    """utime + stime of a process and all its living descendants (workers, inference pools), or of the
    process alone."""
    try:
        # The command name may hold spaces; the fields after it do not.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # it exited between listing and reading
    own = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of stat(5)
    return own + sum(tree_seconds(child) for child in children) if descendants else own


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle, over all cores, since boot."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def run_counted(command: list, env: Optional[dict] = None) -> tuple[str, float]:
    """Runs a load generator to its end: its output, and the CPU time it used, to tell its share of the
    machine apart from the server's and from strangers'. RuntimeError if it fails."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    # wait4 rather than Popen.wait: it also gives the process's own CPU time. Popen is told it has been reaped.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}: {output.strip()}")
    return output, usage.ru_utime + usage.ru_stime


def running_seconds(pid: int) -> float:
    """Time a process's living threads have spent on a CPU, in nanoseconds' precision (schedstat), where
    ``tree_seconds`` counts clock ticks: for the CPU of single requests. A thread that has exited is not in it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9

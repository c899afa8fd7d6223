"""Forked server processes sharing one listening socket (``--workers N``).

The parent only supervises: it forwards SIGTERM and SIGINT to its children,
restarts a child that dies unexpectedly, and exits when all have stopped.
Children die with the parent, so none is ever orphaned.
"""

import ctypes
import logging
import os
import signal
import time
from typing import Callable, NoReturn

from .metrics import forget_process

log = logging.getLogger("modelhost")

PR_SET_PDEATHSIG = 1
RESTART_DELAY_SECONDS = 1.0


def run_forked(count: int, child_main: Callable[[], NoReturn], final_status: int) -> int:
    """Run ``child_main`` in ``count`` children until they are stopped by a signal.

    A child exiting with ``final_status`` is not restarted: it has nothing to
    serve, so all children are stopped and that status is returned.
    """
    children: set[int] = set()
    stopping = False
    status = 0

    def stop_children(signum=signal.SIGTERM, frame=None):
        nonlocal stopping
        stopping = True
        for pid in children:
            os.kill(pid, signum)

    def fork_child():
        parent = os.getpid()
        pid = os.fork()
        if pid:
            children.add(pid)
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        die_with_parent(parent)
        try:
            child_main()
        except BaseException:
            log.exception("server process %d failed", os.getpid())
        os._exit(1)

    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    for _ in range(count):
        fork_child()
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        forget_process(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            continue
        if code == final_status:
            status = code
            stop_children()
            continue
        log.error("server process %d exited with status %d; starting another", pid, code)
        time.sleep(RESTART_DELAY_SECONDS)
        fork_child()
    return status


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` when the parent dies; elsewhere this is a no-op."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(0)

"""Forked server processes sharing one listening socket (``--workers N``).

The parent only supervises: it forwards SIGTERM and SIGINT to its children,
restarts a child that dies unexpectedly, and exits when all have stopped.
Children die with the parent, so none is ever orphaned. A ``LoadedBoard`` in
shared memory lets every child answer for all: the server is ready only once
each process has loaded its models, whichever process a probe reaches.
"""

import ctypes
import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import RawArray
from typing import Callable, NoReturn

from .metrics import forget_process

log = logging.getLogger("modelhost")

PR_SET_PDEATHSIG = 1
RESTART_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class LoadedBoard:
    """One flag per server process, in memory the forked processes share: has it loaded its models?"""

    flags: "ctypes.Array[ctypes.c_bool]"
    slot: int = 0  # the flag of the process holding this board

    @classmethod
    def make(cls, count: int) -> "LoadedBoard":
        return cls(RawArray(ctypes.c_bool, count))

    def mark(self, loaded: bool) -> None:
        self.flags[self.slot] = loaded

    def all_loaded(self) -> bool:
        return all(self.flags)


def run_forked(count: int, child_main: Callable[[LoadedBoard], NoReturn], final_status: int) -> int:
    """Run ``child_main`` in ``count`` children until they are stopped by a signal.

    Each child is given the board with its own slot, which is cleared when the
    child dies. A child exiting with ``final_status`` is not restarted: it has
    nothing to serve, so all children are stopped and that status is returned.
    """
    board = LoadedBoard.make(count)
    children: dict[int, int] = {}  # pid: slot
    stopping = False
    status = 0

    def stop_children(signum=signal.SIGTERM, frame=None):
        nonlocal stopping
        stopping = True
        for pid in children:
            os.kill(pid, signum)

    def fork_child(slot: int):
        parent = os.getpid()
        board.flags[slot] = False
        pid = os.fork()
        if pid:
            children[pid] = slot
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        die_with_parent(parent)
        try:
            child_main(LoadedBoard(board.flags, slot))
        except BaseException:
            log.exception("server process %d failed", os.getpid())
        os._exit(1)

    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    for slot in range(count):
        fork_child(slot)
    while children:
        pid, wait_status = os.wait()
        slot = children.pop(pid)
        board.flags[slot] = False
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
        fork_child(slot)
    return status


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` when the parent dies; elsewhere this is a no-op."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(0)

"""Running ``modelhost serve`` as a real process on 127.0.0.1 for the tests."""

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Optional
from contextlib import contextmanager
from pathlib import Path

import requests

TESTS = Path(__file__).parent
ROOT = TESTS.parent
LISTENING = re.compile(r"listening on (https?)://127\.0\.0\.1:(\d+)")
SERVING_GRPC = re.compile(r"serving gRPC(?: with TLS)? on 127\.0\.0\.1:(\d+)")


class ServerProcess:
    def __init__(self, args, env, command=(sys.executable, "-m", "modelhost"), cwd=None):
        self.process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--http_port", "0", "--grpc_port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        )
        self.lines: list[str] = []
        self.port_known = threading.Event()
        self.url = None
        self.grpc_address: Optional[str] = None  # host:port, once the log has said it
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self):
        for line in self.process.stdout:
            self.lines.append(line)
            grpc_match = SERVING_GRPC.search(line)
            if grpc_match and self.grpc_address is None:
                self.grpc_address = f"127.0.0.1:{grpc_match[1]}"
            match = LISTENING.search(line)
            if match and self.url is None:
                self.url = f"{match[1]}://127.0.0.1:{match[2]}"
                self.port_known.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, expected, timeout: float = 30) -> None:
        """Until the output holds ``expected``, a string or a compiled pattern.

        The output is read by a thread, so a line can arrive a moment after the
        state it reports is visible over HTTP.
        """
        found = expected.search if isinstance(expected, re.Pattern) else lambda log: expected in log
        deadline = time.monotonic() + timeout
        while not found(self.log):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expected!r} was not logged in {timeout}s:\n{self.log}")
            time.sleep(0.02)

    def wait_for_port(self, timeout: float) -> str:
        if not self.port_known.wait(timeout):
            raise AssertionError(f"the server did not start listening:\n{self.log}")
        return self.url

    def wait_until_ready(self, timeout: float, path: str = "/v2/health/ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log}")
            if requests.get(self.url + path, timeout=5).status_code == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"{path} did not answer 200 in {timeout}s:\n{self.log}")

    def stop(self) -> int:
        return stop(self.process)


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL after 15 s; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def plugin_env(*paths) -> dict:
    """The environment for a server that can import the test plugins (and ``paths``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(TESTS), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def running_server(*args, env=None, ready="/v2/health/ready", timeout=60.0, **process):
    """``modelhost serve ARGS`` on a free port; yields the ServerProcess once ``ready`` answers 200.

    ``ready`` is a path to wait for, or None to yield as soon as the port is known; ``process`` takes
    ServerProcess's ``command`` (how modelhost is run) and ``cwd``.
    """
    server = ServerProcess(args, env or plugin_env(), **process)
    try:
        server.wait_for_port(timeout)
        if ready:
            server.wait_until_ready(timeout, ready)
        yield server
    finally:
        server.stop()


def in_another_process(script: str) -> str:
    """What a Python script prints, run in a fresh interpreter: for KServe's clients, whose ``inference.*``
    messages and tritonclient's cannot share protobuf's default pool, and so one process (kserve#3099)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_until(condition, timeout: float = 30) -> None:
    """Until ``condition()`` is true: for a state the server reaches on its own, such as a health check's."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{condition} never held"
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Until ``path`` exists: how a fixture plugin says it has reached a point, with no timing involved."""
    wait_until(path.exists, timeout)


def children_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


def wait_for_children(pid: int, count: int, timeout: float = 30, other_than=frozenset()) -> set[int]:
    """The ``count`` child processes of ``pid`` once there are that many (not counting ``other_than``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = children_of(pid) - set(other_than)
        if len(children) == count:
            return children
        time.sleep(0.02)
    raise AssertionError(f"process {pid} does not have {count} children: {children_of(pid)}")


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_and_expect_children_to_follow(server: ServerProcess, count: int, timeout: float = 30) -> None:
    """SIGKILL the server (no chance to clean up) and expect its ``count`` children to exit by themselves."""
    children = wait_for_children(server.process.pid, count)
    server.process.kill()
    server.process.wait(timeout)
    deadline = time.monotonic() + timeout
    while any(alive(child) for child in children):
        assert time.monotonic() < deadline, f"children {children} outlived their killed parent"
        time.sleep(0.05)

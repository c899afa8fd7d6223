import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ROOT, free_port, plugin_env, stop, wait_until


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups into the tests' ids
def pytest_collection_modifyitems(items):
    """Two test processes (pytest-xdist's ``--dist loadgroup``, pyproject.toml's addopts): each module's tests in
    one of them, so that its fixtures' servers start once, and every test on Ray in one, so that one Ray cluster
    (``ray_head``) serves them all."""
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("ray" if item.get_closest_marker("ray") else item.module.__name__))


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory):
    """plugins/echo really installed (pip, entry points and all) into a directory of its own.

    Servers started with ``plugin_env(installed_plugins)`` discover it as any
    installed plugin, while the test environment itself stays untouched.
    """
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: each test process (pytest-xdist) installs it, and setuptools builds in the source's own
    # build/ folder, where two builds at once collide ("File exists").
    source = shutil.copytree(ROOT / "plugins" / "echo", tmp_path_factory.mktemp("echo") / "echo",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        check=True,
    )
    return target


@pytest.fixture(scope="session")
def installed_env(installed_plugins):
    return plugin_env(installed_plugins)


@pytest.fixture(scope="module", params=["in-process", "workers"])
def mode(request):
    """Where models run: the server's own process, or one worker process per model.

    Protocol tests take this fixture so the same suite runs in both modes.
    """
    return ["--replicas", "0" if request.param == "in-process" else "1"]


@dataclass(frozen=True)
class RayHead:
    """A Ray cluster's head on 127.0.0.1, and how a server places its models there."""

    address: str
    env: dict  # what a process needs to join it, over its own: Ray's token authentication and the token

    def serve_args(self, *extra: str) -> list[str]:
        """Every model on Ray Serve, each replica asking a tenth of a CPU, so that a dozen fit on 2 cores."""
        return ["--runner", "ray", "--ray_address", self.address, "--ray_actor_options", '{"num_cpus": 0.1}', *extra]


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """One Ray cluster for every test that places models on Ray: `ray start --head` with 2 CPUs, as a user
    starts one, bound to 127.0.0.1, stopped after the last test."""
    port = free_port()
    # Ray's token authentication, on by default, with a token of the session's own: `ray start` refuses to
    # start without one, and a fresh machine has no ~/.ray/auth_token.
    joining = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # A single-machine Ray (its servers on 127.0.0.1 alone, ray_cluster.py), which stops at once when the
    # session ends: Ray drains a node for 30 s on SIGTERM otherwise, for Kubernetes' sake.
    env = {**os.environ, **joining, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "w") as output:
        # The ray command that pip installed beside this interpreter, whatever PATH says.
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats"],
                                stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: "Ray runtime started" in log.read_text() or head.poll() is not None, timeout=120)
        assert head.poll() is None, log.read_text()
        yield RayHead(f"127.0.0.1:{port}", joining)
    finally:
        stop(head)  # `ray start --block` stops the cluster's processes when it is stopped


@pytest.fixture(scope="module", params=["in-process", "workers", pytest.param("ray", marks=pytest.mark.ray)])
def runner(request):
    """Where models run: ``mode``'s two, or Ray Serve replicas on the session's Ray: (server args, env)."""
    if request.param == "ray":
        head = request.getfixturevalue("ray_head")
        return head.serve_args(), head.env
    return ["--replicas", "0" if request.param == "in-process" else "1"], {}


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every test that drives a page: Debian's chromium and its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    # The driver named, so that Selenium's manager never looks for one on the network.
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()

"""The model repository extension: the index, unloading and loading again, a plugin installed while the
server runs, and an upgrade under load."""

import subprocess
import sys
import threading
import time

import pytest
import requests
import tritonclient.http as triton

from fixture_plugins.heavy import BALLAST_BYTES
from support import alive, children_of, plugin_env, running_server, wait_for_children
from test_metrics import scrape, value

DOUBLER = ["--plugin", "fixture_plugins.behaving:Doubler"]
MODELS = "/v2/repository/models"
# A plugin package whose answers are its version, built as a wheel for each version.
PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "versioned-model"
version = "{version}.0"

[project.entry-points."modelhost.models"]
versioned = "versioned_model:Versioned"
"""
PLUGIN = """
import time

import numpy as np
from modelhost import hookimpl


class Versioned:
    @hookimpl
    def predict(self, inputs):
        time.sleep(0.005)  # under load, the old version is amid a request when the new one takes over
        return np.full(len(inputs), {version})
"""


@pytest.fixture(scope="module")
def versioned_wheels(tmp_path_factory) -> dict:
    """{version: wheel} for versions 1 and 2 of the 'versioned' plugin, built once for the module."""
    root = tmp_path_factory.mktemp("versioned")
    builds = []
    for version in (1, 2):
        source = root / f"v{version}"
        source.mkdir()
        (source / "pyproject.toml").write_text(PYPROJECT.format(version=version))
        (source / "versioned_model.py").write_text(PLUGIN.format(version=version))
        builds.append(subprocess.Popen([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                        "--no-build-isolation", "--wheel-dir", str(root / "wheels"), str(source)]))
    assert [build.wait(120) for build in builds] == [0, 0]
    return {version: root / "wheels" / f"versioned_model-{version}.0-py3-none-any.whl" for version in (1, 2)}


def pip_install(wheel, target, *options) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    *options, str(wheel)], check=True)


def post(server, path, body=None):
    return requests.post(server.url + path, json=body, timeout=60)


def index(server, **request) -> dict:
    answer = post(server, "/v2/repository/index", request)
    assert answer.status_code == 200
    return {model["name"]: model for model in answer.json()}


def predict(server, model, session=requests):
    return session.post(f"{server.url}/v1/models/{model}:predict", json={"instances": [[0]]}, timeout=30)


def test_the_index_lists_served_and_installed_models_and_triton_s_client_loads_and_unloads(installed_env):
    broken = ["--plugin", "fixture_plugins.broken:FailsToLoad"]
    with running_server("--replicas", "0", *DOUBLER, *broken, env=installed_env,
                        ready="/v2/models/Doubler/ready") as server:
        models = index(server)
        assert models["Doubler"] == {"name": "Doubler", "state": "READY", "reason": ""}
        assert models["FailsToLoad"]["state"] == "UNAVAILABLE"
        assert "weights.bin is missing" in models["FailsToLoad"]["reason"]
        assert models["echo"] == {"name": "echo", "version": "0.1.0", "state": "UNAVAILABLE", "reason": "not loaded"}
        assert list(index(server, ready=True)) == ["Doubler"]

        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert "model_repository" in client.get_server_metadata()["extensions"]
        client.load_model("echo")
        assert client.is_model_ready("echo") and index(server)["echo"]["state"] == "READY"
        client.unload_model("echo")
        assert not client.is_model_ready("echo")
        entries = {model["name"]: model for model in client.get_model_repository_index()}
        assert entries["echo"] == {"name": "echo", "version": "0.1.0", "state": "UNAVAILABLE", "reason": "unloaded"}

        unknown = post(server, f"{MODELS}/nobody/load")
        assert (unknown.status_code, unknown.json()) == (404, {"error": "no model named 'nobody' is installed"})
        failed = post(server, f"{MODELS}/FailsToLoad/load")
        assert failed.status_code == 400 and "weights.bin is missing" in failed.json()["error"]
        assert post(server, f"{MODELS}/Doubler/load", {"parameters": {"config": "{}"}}).status_code == 400


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def server_rss(server) -> int:
    """The memory the server holds: its own and its worker processes'."""
    pid = server.process.pid
    return rss(pid) + sum(rss(child) for child in children_of(pid))


def worker_of(server, model: str) -> int:
    def command_line(pid):
        with open(f"/proc/{pid}/cmdline") as text:
            return text.read().split("\0")

    [pid] = [pid for pid in children_of(server.process.pid) if model in command_line(pid)]
    return pid


def test_unloading_stops_the_model_s_worker_and_frees_its_memory_and_loading_serves_it_again():
    with running_server(*DOUBLER, "--plugin", "fixture_plugins.heavy:Heavy") as server:
        wait_for_children(server.process.pid, 2)
        worker = worker_of(server, "Heavy")
        assert predict(server, "Heavy").status_code == 200
        before, worker_memory = server_rss(server), rss(worker)
        assert worker_memory > BALLAST_BYTES

        answer = post(server, f"{MODELS}/Heavy/unload")
        assert (answer.status_code, answer.json()) == (200, {})
        assert not alive(worker)  # the answer comes once the worker has exited
        assert before - server_rss(server) > 0.75 * worker_memory
        gone = predict(server, "Heavy")
        assert (gone.status_code, gone.json()) == (404, {"error": "Request for unknown model: 'Heavy' is not served here"})
        assert requests.get(server.url + "/v2/models/Heavy/ready", timeout=10).status_code == 404
        # Ready means every model still served is ready.
        assert requests.get(server.url + "/v2/health/ready", timeout=10).status_code == 200
        assert value(scrape(server), "modelhost_replicas_up", model_name="Heavy") == 0
        assert index(server)["Heavy"] == {"name": "Heavy", "state": "UNAVAILABLE", "reason": "unloaded"}

        assert post(server, f"{MODELS}/Heavy/load").status_code == 200
        assert predict(server, "Heavy").status_code == 200
        assert alive(worker_of(server, "Heavy"))
        assert value(scrape(server), "modelhost_replicas_up", model_name="Heavy") == 1


def test_a_plugin_installed_while_the_server_runs_is_loaded_without_a_restart(versioned_wheels, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    # In the server process, where loading means importing a module that was not there at start-up.
    with running_server("--replicas", "0", *DOUBLER, env=plugin_env(site)) as server:
        assert post(server, f"{MODELS}/versioned/load").status_code == 404
        pip_install(versioned_wheels[1], site)
        assert index(server)["versioned"] == {
            "name": "versioned", "version": "1.0", "state": "UNAVAILABLE", "reason": "not loaded"
        }
        assert post(server, f"{MODELS}/versioned/load").status_code == 200
        assert predict(server, "versioned").json() == {"predictions": [1]}


def test_loading_a_served_model_upgrades_it_under_load_and_no_request_fails(versioned_wheels, tmp_path):
    site = tmp_path / "site"
    pip_install(versioned_wheels[1], site)
    with running_server("--model", "versioned", env=plugin_env(site)) as server:
        [old_worker] = wait_for_children(server.process.pid, 1)
        answers = []  # (when sent, status, body)
        stop = threading.Event()

        def client():
            with requests.Session() as session:  # keep-alive, as a load balancer's connections are
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        answer = predict(server, "versioned", session)
                        answers.append((sent, answer.status_code, answer.json()))
                    except requests.RequestException as exc:
                        answers.append((sent, None, repr(exc)))

        def answers_sent_after(moment):
            return [answer for answer in answers if answer[0] > moment]

        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            while len(answers) < 20:
                time.sleep(0.01)
            pip_install(versioned_wheels[2], site, "--upgrade")
            load_sent = time.monotonic()
            load = post(server, f"{MODELS}/versioned/load")
            loaded = time.monotonic()
            while len(answers_sent_after(loaded)) < 20:
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

        assert (load.status_code, load.json()) == (200, {})
        assert [(status, body) for _, status, body in answers if status != 200] == []
        versions = lambda selected: {body["predictions"][0] for _, _, body in selected}  # noqa: E731
        assert versions(answer for answer in answers if answer[0] < load_sent) == {1}
        # While version 2 loaded, version 1 went on answering.
        assert versions(answer for answer in answers if load_sent < answer[0] < loaded) >= {1}
        assert versions(answers_sent_after(loaded)) == {2}
        assert not alive(old_worker)
        assert index(server)["versioned"] == {"name": "versioned", "version": "2.0", "state": "READY", "reason": ""}
        server.wait_for_log("model 'versioned': versioned-model 2.0 now serves; stopping versioned-model 1.0")


def test_with_several_server_processes_the_models_cannot_change():
    # A request reaches one of the processes, which would change alone.
    with running_server("--workers", "2", "--replicas", "0", *DOUBLER) as server:
        for action in ("load", "unload"):
            answer = post(server, f"{MODELS}/Doubler/{action}")
            assert answer.status_code == 400 and "several server processes (--workers)" in answer.json()["error"]
        assert predict(server, "Doubler").status_code == 200

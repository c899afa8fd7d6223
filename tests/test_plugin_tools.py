"""Tools for plugin authors: modelhost.testing serves a plugin object for a test, and `modelhost new` writes a
plugin package that installs and passes its own test as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from fixture_plugins import behaving, broken
from modelhost.testing import ServedError, served
from support import plugin_env, running_server


def test_served_plugins_answer_v1_and_v2_json_and_binary_in_batches():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with served(behaving.Doubler(), "doubler", max_batch_size=4) as client:
        assert client.predict([[1, 2], [3, 4]]) == [[2, 4], [6, 8]]
        for binary in (False, True):
            np.testing.assert_array_equal(client.infer({"x": x}, binary=binary)["x"], x * 2)
        words = client.infer({"w": np.array([b"a", "b".encode()], dtype=object)})["w"]
        assert list(words) == [b"aa", b"bb"]
        assert client.get("/v2/models/doubler/ready").json() == {"name": "doubler", "ready": True}


def test_an_error_answer_raises_with_its_status_and_message():
    with served(behaving.Picky(), "picky") as client:
        with pytest.raises(ServedError) as caught:
            client.predict(["bad"])
    assert caught.value.status == 400 and "'bad' is not an instance" in caught.value.error


def test_a_plugin_that_cannot_load_is_reported_with_its_reason():
    with pytest.raises(ServedError, match="load hook raised FileNotFoundError: weights.bin is missing"):
        with served(broken.FailsToLoad(), "fails"):
            pass


def modelhost(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelhost", *args], cwd=cwd, capture_output=True, text=True,
                          env=env or plugin_env(), timeout=120)


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory) -> Path:
    """A virtual environment that sees this one's packages (modelhost among them), for editable installs that
    must not touch the environment the suite runs in."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # As pip writes the modelhost command: a script, so that its folder, not the current one, leads the import path.
    launcher = venv / "bin" / "modelhost"
    launcher.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom modelhost.cli import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    return venv


def run_step(step: str, venv: Path, cwd: Path) -> subprocess.CompletedProcess:
    """A command `modelhost new` printed, run from ``cwd`` with the virtual environment's pip and python."""
    program, *arguments = shlex.split(step)
    command = {"pip": [str(venv / "bin" / "python"), "-m", "pip", "--quiet"],
               "python": [str(venv / "bin" / "python")]}[program]
    return subprocess.run([*command, *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_modelhost_new_writes_a_plugin_whose_printed_next_steps_work_from_where_it_ran(tmp_path, plugin_venv):
    """Named as its package, the plugin's folder beside the current one once shadowed the installed plugin."""
    written = modelhost("new", "myplugin", cwd=tmp_path)
    install, test, serve = re.findall(r"`([^`]+)`", written.stdout)
    installed = run_step(install, plugin_venv, tmp_path)
    assert installed.returncode == 0, installed.stderr
    tested = run_step(test, plugin_venv, tmp_path)
    assert tested.returncode == 0 and "2 passed" in tested.stdout, tested.stdout + tested.stderr
    program, *arguments = shlex.split(serve)
    assert program == "modelhost" and arguments[0] == "serve"
    with running_server(*arguments[1:], command=(str(plugin_venv / "bin" / "modelhost"),), cwd=tmp_path) as server:
        answer = requests.post(server.url + "/v1/models/myplugin:predict", json={"instances": [[1.0, 2.0]]})
        assert answer.json() == {"predictions": [[2.0, 4.0]]}
    listed = subprocess.run([str(plugin_venv / "bin" / "modelhost"), "list"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert ["myplugin", "myplugin", "0.1.0", "load,", "predict"] in [row.split() for row in listed.stdout.splitlines()]


def test_workers_import_a_plugin_as_the_server_does_whatever_folder_they_start_in(tmp_path, plugin_venv):
    """An editable install of a plugin in the flat layout, served from its own parent folder: the folder named as
    the package is a namespace package to a process whose import path starts with the current folder, and would
    win over the installed plugin, whose editable finder comes after the path's."""
    source = tmp_path / "flatplugin"
    (source / "flatplugin").mkdir(parents=True)
    (source / "flatplugin" / "__init__.py").write_text(
        "from modelhost import hookimpl\n\nclass Model:\n    @hookimpl\n    def predict(self, inputs):\n"
        "        return inputs\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "flatplugin"\nversion = "0.1.0"\n\n'
        '[project.entry-points."modelhost.models"]\nflatplugin = "flatplugin:Model"\n')
    assert run_step(f"pip install -e {source}", plugin_venv, tmp_path).returncode == 0
    # No PYTHONPATH: the suite's ends with an empty entry, the current folder, which would shadow it in the server too.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    with running_server("--model", "flatplugin", command=(str(plugin_venv / "bin" / "modelhost"),), cwd=tmp_path,
                        env=env) as server:
        answer = requests.post(server.url + "/v1/models/flatplugin:predict", json={"instances": [3]})
        assert answer.json() == {"predictions": [3]}


def test_modelhost_new_refuses_a_folder_that_exists_or_a_name_that_is_not_one(tmp_path):
    (tmp_path / "taken").mkdir()
    for name, reason in [("taken", "already exists"), ("3d-model", "is not a plugin name")]:
        result = modelhost("new", name, cwd=tmp_path)
        assert result.returncode == 2 and reason in result.stderr

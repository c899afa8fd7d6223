"""Tools for plugin authors: modelhost.testing serves a plugin object for a test, and `modelhost new` writes a
plugin package that installs and passes its own test as written."""

import subprocess
import sys

import numpy as np
import pytest

from fixture_plugins import behaving, broken
from modelhost.testing import ServedError, served
from support import plugin_env


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


def test_modelhost_new_writes_a_plugin_that_installs_and_passes_its_own_test(tmp_path):
    assert modelhost("new", "demo-model", cwd=tmp_path).returncode == 0
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(tmp_path / "demo-model")], check=True)
    env = plugin_env(site)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=tmp_path / "demo-model", capture_output=True, text=True, env=env, timeout=300)
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout + tests.stderr
    listed = modelhost("list", cwd=tmp_path, env=env)
    assert ["demo-model", "demo-model", "0.1.0", "load,", "predict"] in [row.split() for row in listed.stdout.splitlines()]


def test_modelhost_new_refuses_a_folder_that_exists_or_a_name_that_is_not_one(tmp_path):
    (tmp_path / "taken").mkdir()
    for name, reason in [("taken", "already exists"), ("3d-model", "is not a plugin name")]:
        result = modelhost("new", name, cwd=tmp_path)
        assert result.returncode == 2 and reason in result.stderr

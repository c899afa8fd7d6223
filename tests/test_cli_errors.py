"""The command line's failures: a clear message and a non-zero exit, never a wall of traceback."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from modelhost.cli import build_parser
from support import plugin_env, running_server


def modelhost(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelhost", *args], capture_output=True, text=True,
                          env=env or plugin_env(), timeout=60)


def test_an_unknown_flag_is_named_with_the_usage():
    result = modelhost("serve", "--http_prot", "8080")
    assert result.returncode == 2
    assert "unrecognized arguments: --http_prot" in result.stderr and "usage:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, expected", [
    ("--http_port", "cannot listen on 127.0.0.1:{port}: Address already in use (--http_port picks another port)"),
    ("--grpc_port", "cannot serve gRPC on 127.0.0.1:{port}: Address already in use (--grpc_port picks another "
                    "port; --enable_grpc false serves HTTP alone)"),
])
def test_a_port_in_use_is_named_with_the_flags_that_help(flag, expected):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--http_port": "0", "--grpc_port": "0", flag: str(port)}
        result = modelhost("serve", "--host", "127.0.0.1", *[part for item in ports.items() for part in item],
                           "--plugin", "fixture_plugins.behaving:Doubler")
    assert result.returncode == 2
    assert expected.format(port=port) in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_plugin_missing_its_dependency_names_it_and_where_it_is_imported(tmp_path):
    (tmp_path / "needs_more.py").write_text(
        "import a_dependency_nobody_installed\n"
        "from modelhost import hookimpl\n\n"
        "class Model:\n    @hookimpl\n    def predict(self, inputs):\n        return inputs\n"
    )
    result = modelhost("serve", "--host", "127.0.0.1", "--http_port", "0", "--plugin", "needs_more:Model",
                       env=plugin_env(tmp_path))
    assert result.returncode == 3
    assert "No module named 'a_dependency_nobody_installed'" in result.stderr
    assert f"(at {tmp_path / 'needs_more.py'}:1)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["65536", "65537", "99999", "-1", "http"])
def test_a_port_out_of_range_is_refused_from_the_flag_or_from_PORT(value):
    for result in (modelhost("serve", "--http_port", value), modelhost("serve", env={**plugin_env(), "PORT": value})):
        assert result.returncode == 2 and "usage:" in result.stderr
        assert "argument --http_port/--http-port: " in result.stderr and value in result.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--workers", "0", "must be an integer of at least 1, got 0"),
    ("--max_buffer_size", "-5", "must be an integer of at least 1, got -5"),
    ("--max_asyncio_workers", "0", "must be an integer of at least 1, got 0"),
    ("--replicas", "echo=-1", "where N must be an integer of at least 0, got -1"),
    ("--max_batch_size", "0", "where N must be an integer of at least 1, got 0"),
    ("--max_batch_wait_ms", "nan", "where MS must be a number of at least 0, got nan"),
    ("--max_queue_size", "-1", "where N must be an integer of at least 0, got -1"),
    ("--timeout", "0", "must be a number above 0, got 0"),
    ("--timeout", "inf", "must be a number above 0, got inf"),
    ("--graceful_timeout", "-1", "must be a number of at least 0, got -1"),
    ("--idle_timeout", "-3", "must be a number above 0, got -3"),
    ("--body_timeout", "abc", "expected a number, got 'abc'"),
])
def test_every_numeric_flag_refuses_what_is_out_of_its_range(flag, value, message, capsys):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", flag, value])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


MY_MODULE = "from modelhost import hookimpl\n\nclass MyModel:\n    @hookimpl\n    def predict(self, inputs):\n" \
            "        return inputs * 3\n"


def test_plugin_modules_are_found_in_the_current_directory_in_both_modes(tmp_path, mode):
    (tmp_path / "mymod.py").write_text(MY_MODULE)
    # The console script, not `python -m`, which would put the current directory on sys.path by itself.
    script = Path(sys.executable).with_name("modelhost")
    with running_server(*mode, "--plugin", "mymod:MyModel", command=[str(script)], cwd=tmp_path) as server:
        answer = requests.post(server.url + "/v1/models/MyModel:predict", json={"instances": [2]}, timeout=30)
        assert answer.json() == {"predictions": [6]}


def test_modelhost_list_exits_non_zero_naming_the_plugins_that_are_broken(tmp_path):
    # An installed distribution as importlib.metadata finds one: its metadata and its entry points.
    dist_info = tmp_path / "broken_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[modelhost.models]\nbroken = a_module_nobody_wrote:Model\n")
    result = modelhost("list", env=plugin_env(tmp_path))
    assert result.returncode == 1
    assert "cannot import a_module_nobody_wrote:Model" in result.stdout
    assert "1 plugin(s) cannot be served: broken" in result.stderr

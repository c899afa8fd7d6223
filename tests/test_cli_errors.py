"""The command line's failures: a clear message and a non-zero exit, never a wall of traceback."""

import socket
import subprocess
import sys

from support import plugin_env


def modelhost(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelhost", *args], capture_output=True, text=True,
                          env=env or plugin_env(), timeout=60)


def test_an_unknown_flag_is_named_with_the_usage():
    result = modelhost("serve", "--http_prot", "8080")
    assert result.returncode == 2
    assert "unrecognized arguments: --http_prot" in result.stderr and "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = modelhost("serve", "--host", "127.0.0.1", "--http_port", str(port),
                           "--plugin", "fixture_plugins.behaving:Doubler")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


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

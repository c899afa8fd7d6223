import subprocess
import sys

import pytest

from support import ROOT, plugin_env


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory):
    """plugins/echo really installed (pip, entry points and all) into a directory of its own.

    Servers started with ``plugin_env(installed_plugins)`` discover it as any
    installed plugin, while the test environment itself stays untouched.
    """
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(ROOT / "plugins" / "echo")],
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

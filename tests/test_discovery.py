"""Finding plugins through really installed entry points, and what the CLI says about them."""

import re
import subprocess
import sys

import pytest
import requests

from modelhost import cli, plugins
from modelhost.plugins import ENTRY_POINT_GROUP, discover
from support import ROOT, plugin_env, running_server


def modelhost(*args, env, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "modelhost", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_installed_echo_plugin_is_discovered_through_its_entry_point(installed_plugins):
    (echo,) = [spec for spec in discover_in(installed_plugins) if spec.name == "echo"]
    assert (echo.target, echo.distribution, echo.version) == ("modelhost_echo:Echo", "modelhost-echo", "0.1.0")


def discover_in(path):
    """discover() as a process with ``path`` on sys.path would see it."""
    saved = sys.path[:]
    sys.path.insert(0, str(path))
    try:
        return discover()
    finally:
        sys.path[:] = saved


def test_modelhost_list_prints_name_distribution_version_and_hooks(installed_env):
    result = modelhost("list", env=installed_env)
    assert result.returncode == 0, result.stderr
    plugins, formats = result.stdout.split("\n\n")
    header, *rows = plugins.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert ["echo", "modelhost-echo", "0.1.0", "settings,", "predict"] in [row.split() for row in rows]
    header, *rows = formats.splitlines()  # plugins/onnx and the other first-party formats, installed by the suite's
    assert header.split() == ["FORMAT", "DISTRIBUTION", "VERSION", "FILES"]
    assert ["onnx", "modelhost-onnx", "0.1.0", "*.onnx"] in [row.split() for row in rows]


def test_serve_without_arguments_serves_every_installed_plugin(installed_env):
    # Other installed models (the sample) may still be loading: wait only for echo.
    with running_server(env=installed_env, ready="/v2/models/echo/ready") as server:
        answer = requests.post(server.url + "/v1/models/echo:predict", data=b'{"instances": [[1, 2]]}')
        assert answer.json() == {"predictions": [[1, 2]]}
        server.wait_for_log("model 'echo' is ready in 1 worker process(es) (modelhost-echo, hooks: settings, predict)")


def test_serving_an_installed_model_that_is_not_there_names_what_is(installed_env):
    result = modelhost("serve", "--http_port", "0", "--host", "127.0.0.1", "--model", "nope", env=installed_env)
    assert result.returncode == 2
    assert "no installed model named nope (installed: " in result.stderr and "echo" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_no_plugin_at_all_serve_says_how_to_get_one(monkeypatch, caplog):
    monkeypatch.setattr(plugins, "discover", lambda: [])
    assert cli.main(["serve", "--http_port", "0", "--host", "127.0.0.1"]) == 2
    assert f"install a plugin that declares a '{ENTRY_POINT_GROUP}' entry point, or pass --plugin" in caplog.text


def test_serve_exits_non_zero_when_no_model_can_be_loaded(mode):
    result = modelhost(
        "serve", "--http_port", "0", "--host", "127.0.0.1", *mode,
        "--plugin", "fixture_plugins.broken:FailsToLoad", "--plugin", "fixture_plugins.import_error:Model",
        env=plugin_env(),
    )
    assert result.returncode == 3
    assert "no model could be loaded" in result.stderr
    assert "ModuleNotFoundError: No module named 'a_module_that_does_not_exist' (at " in result.stderr
    assert "load hook raised FileNotFoundError: weights.bin is missing" in result.stderr


def test_broken_plugins_are_reported_at_start_up_and_the_good_one_serves(mode):
    broken = ["Misspelled", "Unmarked", "NoPredict"]
    args = [*mode, *(arg for name in broken for arg in ("--plugin", f"fixture_plugins.broken:{name}"))]
    with running_server(*args, "--plugin", "fixture_plugins.behaving:Doubler",
                        ready="/v2/models/Doubler/ready") as server:
        server.wait_for_log("model 'Misspelled' is not ready: model 'Misspelled': unknown hook 'predcit' (did you mean 'predict'?)")
        server.wait_for_log("model 'Unmarked': preprocess not marked with @modelhost.hookimpl")
        server.wait_for_log("model 'NoPredict': the plugin implements no predict hook")


def plugin_page_toml_blocks() -> list[str]:
    """The TOML blocks of the docs' plugin page (once README's section): the template's pyproject.toml, then its
    table for modules."""
    page = (ROOT / "docs" / "plugins.md").read_text()
    return re.findall(r"```toml\n(.*?)```", page, re.S)


PLUGIN_CODE = "from modelhost import hookimpl\n{import_line}\n\nclass MyModel:\n    @hookimpl\n" \
              "    def predict(self, inputs):\n        return inputs * SCALE\n"


@pytest.mark.parametrize("layout", ["package", "modules"])
def test_the_plugin_pages_template_installs_a_plugin_of_several_modules(tmp_path, layout):
    template, modules_table = plugin_page_toml_blocks()[:2]
    project = tmp_path / "my-model"
    project.mkdir()
    if layout == "package":
        (project / "mymodel").mkdir()
        (project / "mymodel" / "__init__.py").write_text(PLUGIN_CODE.format(import_line="from .helpers import SCALE"))
        (project / "mymodel" / "helpers.py").write_text("SCALE = 5\n")
        (project / "pyproject.toml").write_text(template)
    else:
        (project / "mymodel.py").write_text(PLUGIN_CODE.format(import_line="from helpers import SCALE"))
        (project / "helpers.py").write_text("SCALE = 5\n")
        last_table = template.index("[tool.setuptools.packages.find]")
        (project / "pyproject.toml").write_text(template[:last_table] + modules_table)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(project)],
                   check=True)
    result = modelhost("list", env=plugin_env(site))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["my-model", "my-model", "1.0.0", "predict"] in [row.split() for row in result.stdout.splitlines()]

"""What a plugin's author is told when the plugin is wrong: a forgotten return, a result that is no rows, an
argument a hook does not pass, an import path that names nothing the plugin has, code that --reload cannot serve,
a tensor sent without its datatype."""

import subprocess
import sys

import numpy as np
import orjson
import pytest
import requests

from modelhost import InferenceRequest, hookimpl
from modelhost.errors import InvalidInput, PluginError, PluginLoadError
from modelhost.hookcallers import run_sync
from modelhost.model import Model
from modelhost.plugins import PluginSpec, import_plugin, make_plugin_manager
from modelhost.protocol import grpc_v2, v2
from fixture_plugins import broken, mistakes
from support import plugin_env, running_server
from test_reload import VERSION, wait_for_answer


@pytest.fixture(scope="module")
def server(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.mistakes:ForgetsInPreprocess",
                        "--plugin", "fixture_plugins.mistakes:ForgetsInPostprocess") as server:
        yield server


def defined_at(function) -> str:
    return f"{function.__code__.co_filename}:{function.__code__.co_firstlineno}"


def test_a_forgotten_return_is_a_500_naming_the_hook_and_logged_once_with_where(server):
    for instances in ([[1]], [[2]], [[3]]):
        answer = requests.post(f"{server.url}/v1/models/ForgetsInPreprocess:predict", json={"instances": instances},
                               timeout=30)
        assert (answer.status_code, answer.json()) == (500, {"error": (
            "model 'ForgetsInPreprocess': preprocess returned None, where it must return predict's inputs "
            "(a forgotten return?)")})
    # The third request has been through the plugin's preprocess: the first two's lines are in the log by now.
    server.wait_for_log("ForgetsInPreprocess saw [[3]]")
    where = f"preprocess returned None (defined at {defined_at(mistakes.ForgetsInPreprocess.preprocess)})"
    assert server.log.count(where) == 1, server.log


def test_a_forgotten_return_in_postprocess_is_not_answered_with_the_outputs(server):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    answer = requests.post(f"{server.url}/v2/models/ForgetsInPostprocess/infer", json=body, timeout=30)
    assert (answer.status_code, answer.json()) == (500, {"error": (
        "model 'ForgetsInPostprocess': postprocess returned None, where it must return the response's outputs "
        "(a forgotten return?)")})
    server.wait_for_log(f"(defined at {defined_at(mistakes.ForgetsInPostprocess.postprocess)})")


def returning(value) -> object:
    class Returning:
        @hookimpl
        def predict(self, inputs):
            return value

    return Returning()


def v1(instances) -> InferenceRequest:
    return InferenceRequest(protocol="v1", instances=instances)


@pytest.mark.parametrize("value, what", [(None, "returned None"), ("positive", "returned a str"),
                                         ({"a", "b"}, "returned a set"), (np.float32(1), "returned a float32")])
def test_predict_answering_no_rows_is_told_what_it_returned_and_what_it_owes(value, what):
    with pytest.raises(PluginError) as caught:
        run_sync(Model("m", returning(value)).infer(v1([[1], [2]])))
    assert str(caught.value).startswith(f"model 'm': predict {what}, where it must return one row per instance")


def test_a_hook_taking_an_argument_it_is_not_passed_is_told_those_it_is():
    with pytest.raises(PluginLoadError) as caught:
        make_plugin_manager("bad", broken.WrongArguments())
    assert str(caught.value) == ("model 'bad': predict takes 'batch_size', which its hook does not pass "
                                 "(predict is passed inputs and predictor, and may take any of them)")


@pytest.mark.parametrize("target, message", [
    ("fixture_plugins.behaving:Dobler",
     "module 'fixture_plugins.behaving' has no attribute 'Dobler' (did you mean 'Doubler'?)"),
    ("fixture_plugins.behaving:doubler",
     "module 'fixture_plugins.behaving' has no attribute 'doubler' (did you mean 'Doubler'?)"),
    ("fixture_plugins.mistakes",
     "the module has no hooks of its own: name its plugin class, as fixture_plugins.mistakes:ForgetsInPreprocess "
     "(its classes with hooks: ForgetsInPreprocess, ForgetsInPostprocess, NeedsArguments)"),
])
def test_an_import_path_that_names_no_plugin_says_what_it_may_have_meant(target, message):
    with pytest.raises(PluginLoadError) as caught:
        import_plugin(PluginSpec.from_import_path(target))
    assert str(caught.value) == f"cannot import {target}: {message}"


def test_a_plugin_imported_as_a_namespace_folder_is_said_to_be_one(tmp_path, monkeypatch):
    """A folder named as the plugin's package, with no __init__.py, in a folder on the import path (the current
    one, say): it was 'has no attribute', as if the plugin lacked its class."""
    (tmp_path / "shadowed").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError) as caught:
        import_plugin(PluginSpec.from_import_path("shadowed:Model"))
    assert str(caught.value).startswith(f"cannot import shadowed:Model: 'shadowed' is imported as the folder "
                                        f"{tmp_path / 'shadowed'}, which has no __init__.py (a namespace package)")


@pytest.mark.parametrize("target", ["a_module_nobody_wrote:Model", "fixture_plugins.mistakes:NeedsArguments"])
def test_load_errors_say_where_only_in_the_plugins_code(target):
    with pytest.raises(PluginLoadError) as caught:
        import_plugin(PluginSpec.from_import_path(target))
    assert caught.value.where == "", caught.value.for_log()


def test_serve_tells_the_author_what_they_may_have_meant_and_nothing_of_the_hosts_insides():
    result = subprocess.run([sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", "0",
                             "--plugin", "fixture_plugins.behaving:Dobler", "--plugin", "a_module_nobody_wrote:Model"],
                            capture_output=True, text=True, env=plugin_env(), timeout=60)
    assert result.returncode == 3, result.stderr
    assert "has no attribute 'Dobler' (did you mean 'Doubler'?)" in result.stderr
    assert "No module named 'a_module_nobody_wrote'" in result.stderr
    assert "(at " not in result.stderr


LOAD_FAILS = VERSION.format(answer="second").replace("class Model:\n", """class Model:
    @hookimpl
    def load(self):
        raise FileNotFoundError("weights.bin")

""")


def test_a_reload_that_cannot_serve_names_the_model_once_and_never_says_it_is_not_ready(tmp_path):
    module = tmp_path / "devmodel.py"
    module.write_text(VERSION.format(answer="first"))
    with running_server("--plugin", "devmodel:Model", "--reload", cwd=tmp_path, env=plugin_env()) as server:
        server.wait_for_log("reloading models when their source changes: Model")
        module.write_text(LOAD_FAILS)
        server.wait_for_log("its changed code cannot serve, so the code before it serves on: failed to load model "
                            "'Model': load hook raised FileNotFoundError: weights.bin")
        loaded = requests.post(f"{server.url}/v2/repository/models/Model/load", timeout=60)
        assert (loaded.status_code, loaded.json()) == (400, {"error": (
            "failed to load model 'Model': load hook raised FileNotFoundError: weights.bin")})
        wait_for_answer(server, "first")
    assert "is not ready" not in server.log


@pytest.mark.parametrize("datatype", [None, ""])
def test_a_tensor_without_its_datatype_is_told_it_is_required(datatype):
    described = {"name": "x", "shape": [1], "data": [1], **({"datatype": datatype} if datatype is not None else {})}
    with pytest.raises(InvalidInput, match=r"^input 'x': 'datatype' is required \(one of BOOL, .*, BYTES\)$"):
        v2.decode_request(orjson.dumps({"inputs": [described]}), None)
    message = grpc_v2.messages().ModelInferRequest(inputs=[{"name": "x", "shape": [1],
                                                            "contents": {"int_contents": [1]}}])
    with pytest.raises(InvalidInput, match=r"^input 'x': 'datatype' is required"):
        grpc_v2.decode_infer_request(message)

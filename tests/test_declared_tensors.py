"""What a model declares in its metadata is held to: a V2 request to a model with no preprocess of its own, whose
predict takes the request's tensors as sent, is checked against its declared inputs before the plugin runs (400
naming the input, as Triton answers), in both modes, with batching on and off; outputs that differ from the declared
ones are logged once."""

import logging

import numpy as np
import orjson
import pytest
import requests
import tritonclient.grpc

from modelhost import InferenceRequest, hookimpl
from modelhost.errors import PluginLoadError
from modelhost.hookcallers import run_sync
from modelhost.model import Model
from fixture_plugins import declaring
from support import plugin_env, running_server

ROW = [[1.0, 2.0, 3.0]]


@pytest.fixture(scope="module")
def server(mode):
    plugins = [f"fixture_plugins.declaring:{name}" for name in ("Declares", "DeclaresBatched", "Misdeclares")]
    with running_server(*mode, *(arg for plugin in plugins for arg in ("--plugin", plugin)),
                        "--plugin", "fixture_plugins.behaving:Declared") as server:
        yield server


def tensor(name: str, datatype: str, data) -> dict:
    array = np.asarray(data)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def infer(server, model: str, *inputs: dict) -> requests.Response:
    return requests.post(f"{server.url}/v2/models/{model}/infer", data=orjson.dumps({"inputs": list(inputs)}),
                         timeout=30)


@pytest.mark.parametrize("model", ["Declares", "DeclaresBatched"])
@pytest.mark.parametrize("inputs, message", [
    ([tensor("z", "FP32", ROW)], "the model has no input 'z' (it takes 'x', 'mask')"),
    ([tensor("mask", "BOOL", [True])], "missing input 'x' (FP32 [-1, 3])"),
    ([tensor("x", "FP64", ROW)], "input 'x' is FP64; the model takes FP32"),
    ([tensor("x", "FP32", [[1.0, 2.0, 3.0, 4.0]])], "input 'x' has shape [1, 4]; the model takes [-1, 3] (-1: any size)"),
    ([tensor("x", "FP32", [1.0, 2.0, 3.0])], "input 'x' has shape [3]; the model takes [-1, 3] (-1: any size)"),
    ([tensor("x", "FP32", ROW), tensor("mask", "INT8", [1])], "input 'mask' is INT8; the model takes BOOL"),
])
def test_a_request_other_than_declared_is_a_400_naming_the_input(server, model, inputs, message):
    answer = infer(server, model, *inputs)
    assert (answer.status_code, answer.json()) == (400, {"error": message})


@pytest.mark.parametrize("model", ["Declares", "DeclaresBatched"])
def test_a_request_as_declared_is_served_with_or_without_its_optional_input(server, model):
    for inputs in ([tensor("x", "FP32", ROW * 2)], [tensor("x", "FP32", ROW), tensor("mask", "BOOL", [True])]):
        answer = infer(server, model, *inputs)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [value * 2 for value in inputs[0]["data"]]
    declared = requests.get(f"{server.url}/v2/models/{model}/config", timeout=10).json()["input"]
    assert [tensor.get("optional", False) for tensor in declared] == [False, True]  # as Triton's config says it
    with tritonclient.grpc.InferenceServerClient(server.grpc_address) as client:  # its proto has no 'optional'
        assert [tensor["name"] for tensor in client.get_model_config(model, as_json=True)["config"]["input"]] == \
            ["x", "mask"]


def test_a_model_with_its_own_preprocess_takes_its_requests_as_it_chooses(server):
    # Declared declares x as FP32 and its preprocess takes any numbers: the host leaves the request to it.
    answer = infer(server, "Declared", tensor("x", "FP64", ROW))
    assert (answer.status_code, answer.json()["outputs"][0]["data"]) == (200, [6.0])


def test_outputs_other_than_declared_are_answered_and_logged(server):
    answer = infer(server, "Misdeclares", tensor("x", "FP64", ROW))
    assert (answer.status_code, answer.json()["outputs"][0]["datatype"]) == (200, "FP64")
    server.wait_for_log("model 'Misdeclares' answers other outputs than its metadata tells clients: output 'y' is "
                        "FP64; its metadata declares FP32")


@pytest.mark.ray
def test_on_ray_a_request_other_than_declared_is_refused_before_the_plugin_runs(ray_head):
    with running_server(*ray_head.serve_args(), "--plugin", "fixture_plugins.declaring:Declares",
                        env={**plugin_env(), **ray_head.env}, timeout=120) as server:
        answer = infer(server, "Declares", tensor("x", "FP64", ROW))
        assert (answer.status_code, answer.json()) == (400, {"error": "input 'x' is FP64; the model takes FP32"})


def v2(**inputs) -> InferenceRequest:
    return InferenceRequest(protocol="v2", inputs={name: np.asarray(value) for name, value in inputs.items()})


def test_outputs_other_than_declared_are_logged_once_per_model(caplog):
    caplog.set_level(logging.WARNING, "modelhost")
    model = Model("mis", declaring.Misdeclares())
    run_sync(model.load({}))
    for _ in range(3):
        run_sync(model.infer(v2(x=np.ones((1, 3)))))
    assert [record.getMessage() for record in caplog.records] == [
        "model 'mis' answers other outputs than its metadata tells clients: output 'y' is FP64; its metadata "
        "declares FP32 (logged once)"]


def declaring_plugin(declared: dict) -> object:
    class Declaring:
        @hookimpl
        def metadata(self):
            return declared

        @hookimpl
        def predict(self, inputs):
            return inputs

    return Declaring()


@pytest.mark.parametrize("declared, message", [
    ({"inputs": {"x": "FP32"}}, "'inputs' that are not a list of tensors"),
    ({"inputs": [{"datatype": "FP32"}]}, "input 0 with no string 'name'"),
    ({"inputs": [{"name": "x", "datatype": "float32"}]}, "input 'x' with datatype 'float32' (known: BOOL, "),
    ({"inputs": [{"name": "x", "shape": [-2, 3]}]}, "input 'x' with shape [-2, 3] (integers, -1 for any size)"),
    ({"inputs": [{"name": "x", "optional": "yes"}]}, "input 'x' with optional 'yes' (true or false)"),
    ({"outputs": [{"name": "y"}, {"name": "y"}]}, "output 'y' twice"),
])
def test_a_declaration_that_is_not_one_is_refused_at_load(declared, message):
    with pytest.raises(PluginLoadError) as caught:
        run_sync(Model("odd", declaring_plugin(declared)).load({}))
    assert str(caught.value).startswith(f"model 'odd': the metadata hook declares {message}")

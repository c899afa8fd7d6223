"""Every V1 and V2 endpoint over a real socket: answers, errors, and serving on after each error."""

import numpy as np
import orjson
import pytest
import requests

from support import running_server

PLUGINS = [
    "fixture_plugins.behaving:Doubler",
    "fixture_plugins.behaving:Declared",
    "fixture_plugins.behaving:Picky",
    "fixture_plugins.behaving:Complex",
]


@pytest.fixture(scope="module")
def server(installed_env, runner):
    args, env = runner
    args = [*args, "--model", "echo"]
    for plugin in PLUGINS:
        args += ["--plugin", plugin]
    with running_server(*args, "--max_buffer_size", "100000", env={**installed_env, **env}, timeout=120) as server:
        yield server


@pytest.fixture
def get(server):
    return lambda path, **kw: requests.get(server.url + path, timeout=30, **kw)


@pytest.fixture
def post(server):
    return lambda path, body, **kw: requests.post(server.url + path, data=body, timeout=30, **kw)


def test_liveness_readiness_and_server_metadata(get):
    assert get("/").json() == {"status": "alive"}
    assert get("/v2/health/live").json() == {"live": True}
    ready = get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    metadata = get("/v2").json()
    assert metadata["name"] == "modelhost" and "binary_tensor_data" in metadata["extensions"]


def test_v1_lists_models_and_their_status(get):
    assert sorted(get("/v1/models").json()["models"]) == ["Complex", "Declared", "Doubler", "Picky", "echo"]
    status = get("/v1/models/echo")
    assert (status.status_code, status.json()) == (200, {"name": "echo", "ready": True})


def test_v1_predict_with_instances_or_inputs(post):
    answer = post("/v1/models/Doubler:predict", b'{"instances": [[1, 2], [3, 4]]}')
    assert (answer.status_code, answer.json()) == (200, {"predictions": [[2, 4], [6, 8]]})
    assert answer.headers["Content-Type"] == "application/json"
    assert post("/v1/models/echo:predict", b'{"inputs": [{"a": 1}, "b"]}').json() == {"predictions": [{"a": 1}, "b"]}


def test_v2_model_metadata_and_readiness(get):
    metadata = get("/v2/models/Declared").json()
    assert metadata == {
        "name": "Declared", "versions": ["7"], "platform": "numpy",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1]}],
    }
    echo = get("/v2/models/echo").json()
    assert (echo["inputs"], echo["versions"]) == ([], ["0.1.0"])  # its distribution's version
    for path in ("/v2/models/echo/ready", "/v2/models/echo/versions/0.1.0/ready"):
        answer = get(path)
        assert (answer.status_code, answer.json()) == (200, {"name": "echo", "ready": True})
    assert get("/v2/models/echo/versions/0.1.0").json() == echo


@pytest.mark.parametrize("path", ["/v2/models/echo/versions/1", "/v2/models/echo/versions/1/ready",
                                  "/v2/models/Declared/versions/0.1.0", "/v2/models/Doubler/versions/1/ready"])
def test_a_version_that_is_not_served_is_not_found(get, path):
    answer = get(path)
    assert answer.status_code == 404
    assert "has no version" in answer.json()["error"]


def test_inference_at_a_version_that_is_not_served_is_not_found(post):
    answer = post("/v2/models/echo/versions/2/infer", v2_body())
    assert (answer.status_code, answer.json()) == (404, {"error": "Request for unknown model: 'echo' has no version "
                                                                  "'2', failed to get model version (served: 0.1.0)"})
    answer = post("/v2/models/echo/versions/0.1.0/infer", v2_body())
    assert (answer.status_code, answer.json()["model_version"]) == (200, "0.1.0")


def test_v2_infer_with_json_tensors(post):
    body = orjson.dumps({
        "id": "abc",
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
    })
    for path in ("/v2/models/Declared/infer", "/v2/models/Declared/versions/7/infer"):
        answer = post(path, body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "model_name": "Declared", "model_version": "7", "id": "abc",
            "outputs": [{"name": "sum", "datatype": "FP32", "shape": [2], "data": [6.0, 15.0]}],
        }


def test_v2_infer_with_binary_tensors_both_ways(post):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    header = orjson.dumps({
        "inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP32", "parameters": {"binary_data_size": 48}}],
        "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
    })
    answer = post("/v2/models/Doubler/infer", header + array.tobytes(),
                  headers={"Inference-Header-Content-Length": str(len(header))})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/octet-stream"
    length = int(answer.headers["Inference-Header-Content-Length"])
    (output,) = orjson.loads(answer.content[:length])["outputs"]
    assert output == {"name": "x", "datatype": "FP32", "shape": [4, 3], "parameters": {"binary_data_size": 48}}
    np.testing.assert_array_equal(np.frombuffer(answer.content[length:], np.float32).reshape(4, 3), array * 2)


def v2_body(datatype="FP32", shape=(1,), data=(1,)):
    return orjson.dumps({"inputs": [{"name": "x", "shape": list(shape), "datatype": datatype, "data": list(data)}]})


ERRORS = [
    ("POST", "/v1/models/echo:predict", b"{not json", 400, "malformed JSON"),
    ("POST", "/v1/models/echo:predict", b'{"instances": 5}', 400, "'instances' (or 'inputs') as a JSON list"),
    ("POST", "/v2/models/echo/infer", v2_body(shape=(2,)), 400, "shape [2] holds 2 elements, data has 1"),
    ("POST", "/v2/models/echo/infer", v2_body("INT8", data=[1.5]), 400, "INT8 data cannot hold fractional numbers"),
    ("POST", "/v1/models/Picky:predict", b'{"instances": ["bad"]}', 400, "'bad' is not an instance"),
    ("POST", "/v1/models/nobody:predict", b'{"instances": []}', 404, "Request for unknown model: 'nobody' is not served here"),
    ("POST", "/v2/models/nobody/infer", v2_body(), 404, "Request for unknown model: 'nobody' is not served here"),
    ("GET", "/v2/models/nobody", None, 404, "Request for unknown model: 'nobody' is not served here"),
    ("GET", "/v1/models/nobody", None, 404, "Request for unknown model: 'nobody' is not served here"),
    ("GET", "/v3/anything", None, 404, "no such path: GET /v3/anything"),
    ("GET", "/v2/models/echo/infer", None, 405, "Method Not Allowed"),
    ("POST", "/v1/models/%ff:predict", b'{"instances": [1]}', 400, "the model name in the path is not UTF-8"),
    ("POST", "/v2/models/echo/infer", b"x" * 100001, 413, "larger than max_buffer_size (100000 bytes)"),
    ("POST", "/v1/models/Picky:predict", b'{"instances": ["boom"]}', 500,
     "model 'Picky': predict hook raised RuntimeError: the model blew up"),
    ("POST", "/v1/models/Complex:predict", b'{"instances": [1]}', 500,
     "model 'Complex': predict returned predictions that JSON cannot carry"),
    ("POST", "/v2/models/Complex/infer", v2_body(), 500,
     "model 'Complex': predict returned output 'output-0' of dtype complex64, which the protocol cannot carry"),
]


@pytest.mark.parametrize("method, path, body, status, message", ERRORS)
def test_errors_answer_json_with_the_right_status_and_the_server_serves_on(server, method, path, body, status, message):
    answer = requests.request(method, server.url + path, data=body, timeout=30)
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    assert message in answer.json()["error"]
    after = requests.post(server.url + "/v1/models/echo:predict", data=b'{"instances": [1]}', timeout=30)
    assert after.json() == {"predictions": [1]}


def test_a_chunked_body_over_the_limit_never_reaches_the_model_and_the_server_serves_on(server):
    chunks = (b"x" * 1000 for _ in range(150))
    try:
        answer = requests.post(server.url + "/v2/models/echo/infer", data=chunks, timeout=30)
    except requests.ConnectionError:
        pass  # the server may close while the client still sends; what matters is that it serves on
    else:
        assert answer.status_code == 413
    assert requests.get(server.url + "/v2/health/live", timeout=30).status_code == 200


def test_models_that_fail_to_load_are_not_ready_and_the_others_serve(installed_env, mode):
    args = [*mode, "--plugin", "fixture_plugins.broken:FailsToLoad", "--plugin", "fixture_plugins.behaving:Doubler"]
    with running_server(*args, env=installed_env, ready="/v2/models/Doubler/ready") as server:
        assert requests.post(server.url + "/v1/models/Doubler:predict", data=b'{"instances": [2]}').json() == {
            "predictions": [4]
        }
        ready = requests.get(server.url + "/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        for path in ("/v2/models/FailsToLoad/ready", "/v1/models/FailsToLoad"):
            answer = requests.get(server.url + path)
            assert (answer.status_code, answer.json()) == (503, {"name": "FailsToLoad", "ready": False})
        reason = "load hook raised FileNotFoundError: weights.bin is missing"
        server.wait_for_log(reason)  # each model loads on its own: Doubler may be ready first
        for method, path, body in [("POST", "/v2/models/FailsToLoad/infer", v2_body()),
                                   ("POST", "/v1/models/FailsToLoad:predict", b'{"instances": [1]}'),
                                   ("GET", "/v2/models/FailsToLoad", None)]:
            answer = requests.request(method, server.url + path, data=body)
            assert answer.status_code == 503 and reason in answer.json()["error"]
        server.wait_for_log("model 'Doubler' is ready")

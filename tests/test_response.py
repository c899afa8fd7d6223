"""What postprocess may say beyond its outputs (modelhost.Response): V2 response and per-output parameters of
every JSON type, and HTTP headers, over raw HTTP and Triton's client, in both modes."""

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton

from support import running_server

EVERY_JSON_TYPE = {"text": "héllo", "count": 7, "big": 2**53 + 1, "ratio": 0.25, "flag": True, "nothing": None,
                   "list": [1, "a", False], "object": {"nested": [1.5, {"deep": "yes"}]}}


@pytest.fixture(scope="module")
def server(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:Parameters") as server:
        yield server


def v2_body(parameters: dict, binary: bool = False) -> tuple[bytes, dict]:
    x = np.arange(3, dtype=np.float32)
    if not binary:
        return orjson.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": x.tolist()}],
                             "parameters": parameters}), {}
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 12}}],
                           "parameters": {**parameters, "binary_data_output": True}})
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_parameters_come_back_exactly_with_output_parameters_and_a_header(server, binary):
    body, headers = v2_body(EVERY_JSON_TYPE, binary)
    answer = requests.post(server.url + "/v2/models/Parameters/infer", data=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    length = int(answer.headers.get("Inference-Header-Content-Length", len(answer.content)))
    response = orjson.loads(answer.content[:length])
    sent = {**EVERY_JSON_TYPE, **({"binary_data_output": True} if binary else {})}
    assert response["parameters"] == sent
    [output] = response["outputs"]
    assert {key: output["parameters"][key] for key in ("unit", "index")} == {"unit": "m", "index": 0}
    assert ("binary_data_size" in output["parameters"]) == binary
    assert answer.headers["X-Model-Note"] == "echoed"


def test_tritons_client_gets_the_parameters_back(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x = triton.InferInput("x", [2], "FP32")
    x.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    parameters = {key: value for key, value in EVERY_JSON_TYPE.items() if isinstance(value, (str, int, float, bool))}
    result = client.infer("Parameters", [x], parameters=parameters)
    assert {key: result.get_response()["parameters"][key] for key in parameters} == parameters
    np.testing.assert_array_equal(result.as_numpy("x"), [1.0, 2.0])


def test_v1_answers_carry_the_header(server):
    answer = requests.post(server.url + "/v1/models/Parameters:predict", json={"instances": [1, 2]}, timeout=30)
    assert answer.json() == {"predictions": [1, 2]} and answer.headers["X-Model-Note"] == "echoed"


def test_a_header_http_cannot_carry_is_the_plugins_error_and_the_server_serves_on(server):
    answer = requests.post(server.url + "/v1/models/Parameters:predict",
                           json={"instances": [1], "parameters": {"bad_header": True}}, timeout=30)
    assert answer.status_code == 500
    assert "model 'Parameters': postprocess returned header 'X-Note' with a value that is not one line" in \
        answer.json()["error"]
    assert requests.post(server.url + "/v1/models/Parameters:predict", json={"instances": [1]}, timeout=30).ok

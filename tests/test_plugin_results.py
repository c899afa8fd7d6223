"""What a plugin returns is checked before it is encoded: a result no protocol can carry is a 500 naming the
model, the hook and what was wrong, in both modes, with batching on and off; the server serves on."""

import numpy as np
import orjson
import pytest
import requests

from support import running_server


@pytest.fixture(scope="module", params=["no batching", "batching"])
def server(mode, request):
    batching = ["--max_batch_size", "4"] if request.param == "batching" else []
    with running_server(*mode, *batching, "--plugin", "fixture_plugins.returns:Returns",
                        "--plugin", "fixture_plugins.returns:DropsARow",
                        "--plugin", "fixture_plugins.behaving:Picky") as server:
        yield server


def v2(give: str, binary: bool = False) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
                         "parameters": {"give": give, "binary_data_output": binary}})


def post(server, path: str, body: bytes) -> requests.Response:
    return requests.post(server.url + path, data=body, timeout=30)


@pytest.mark.parametrize("give, binary, message", [
    ("set", False, "model 'Returns': postprocess returned output 'output-0' holding a set ({1, 2, 3})"),
    ("set", True, "model 'Returns': postprocess returned output 'output-0' holding a set ({1, 2, 3})"),
    ("mixed-table", True, "model 'Returns': postprocess returned output 'table' holding a int (1)"),
    ("object", False, "model 'Returns': postprocess returned output 'thing' holding a object"),
])
def test_v2_outputs_that_are_no_tensors_are_named(server, give, binary, message):
    answer = post(server, "/v2/models/Returns/infer", v2(give, binary))
    assert (answer.status_code, answer.headers["Content-Type"]) == (500, "application/json")
    assert message in answer.json()["error"]
    assert post(server, "/v2/models/Returns/infer", v2("not-finite")).status_code == 200


def test_v1_columns_of_different_lengths_are_not_cut_to_the_shortest(server):
    answer = post(server, "/v1/models/Returns:predict", b'{"instances": [1], "parameters": {"give": "unequal-columns"}}')
    assert answer.status_code == 500
    assert answer.json()["error"] == ("model 'Returns': postprocess returned columns of different lengths "
                                      "('a': 3, 'b': 2), where each row is an instance")


@pytest.mark.parametrize("path, body", [
    ("/v1/models/DropsARow:predict", b'{"instances": [[1], [2], [3]]}'),
    ("/v2/models/DropsARow/infer", orjson.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": "INT32",
                                                                "data": [1, 2, 3]}]})),
])
def test_predict_answering_another_number_of_rows_is_named_with_both_counts(server, path, body):
    answer = post(server, path, body)
    assert (answer.status_code, answer.json()) == (
        500, {"error": "model 'DropsARow': predict returned 2 rows for 3 inputs"})


def test_floats_that_are_not_finite_are_null_in_json_and_exact_in_binary(server):
    answer = post(server, "/v1/models/Returns:predict", b'{"instances": [1], "parameters": {"give": "not-finite"}}')
    assert answer.json() == {"predictions": [None, None, None, 1.5]}
    answer = post(server, "/v2/models/Returns/infer", v2("not-finite"))
    assert answer.json()["outputs"][0]["data"] == [None, None, None, 1.5]
    answer = post(server, "/v2/models/Returns/infer", v2("not-finite", binary=True))
    length = int(answer.headers["Inference-Header-Content-Length"])
    np.testing.assert_array_equal(np.frombuffer(answer.content[length:], np.float32),
                                  [np.nan, np.inf, -np.inf, 1.5])


def test_a_hook_that_raises_tells_the_client_what_and_the_log_where(server):
    answer = requests.post(server.url + "/v1/models/Picky:predict", data=b'{"instances": ["boom"]}',
                           headers={"x-request-id": "where-1"}, timeout=30)
    assert (answer.status_code, answer.json()) == (
        500, {"error": "model 'Picky': predict hook raised RuntimeError: the model blew up"})
    server.wait_for_log("request_id=where-1")
    lines = server.log.splitlines()
    raised = next(index for index, line in enumerate(lines) if "predict hook raised" in line and "where-1" in line)
    # The traceback follows the line that names the request, with the plugin's file and line.
    assert any('behaving.py", line' in line for line in lines[raised:raised + 20])

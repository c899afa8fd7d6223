"""The V1 and V2 codecs on their own: every datatype, the binary extension, and what they refuse."""

import struct

import numpy as np
import orjson
import pytest

from modelhost import InferenceRequest
from modelhost.errors import InvalidInput, PluginError
from modelhost.protocol import tensors, v1, v2

SAMPLES = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 2, 65535],
    "UINT32": [0, 1, 2, 2**32 - 1],
    "UINT64": [0, 1, 2, 2**64 - 1],
    "INT8": [-128, 0, 1, 127],
    "INT16": [-32768, 0, 1, 32767],
    "INT32": [-(2**31), 0, 1, 2**31 - 1],
    "INT64": [-(2**63), 0, 1, 2**63 - 1],
    "FP16": [0.5, -1.0, 2.0, 65504.0],
    "FP32": [0.25, -1.5, 3.0, 1e30],
    "FP64": [0.1, -1e-300, 3.0, 1e300],
    "BYTES": ["a", "", "héllo", "four"],
}


def infer_body(*inputs, **extra) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def tensor(name, datatype, shape, data=None, **parameters):
    out = {"name": name, "datatype": datatype, "shape": shape}
    if data is not None:
        out["data"] = data
    if parameters:
        out["parameters"] = parameters
    return out


@pytest.mark.parametrize("datatype", SAMPLES)
def test_every_datatype_round_trips_as_json(datatype):
    request = v2.decode_request(infer_body(tensor("x", datatype, [2, 2], SAMPLES[datatype])), None)
    array = request.inputs["x"]
    assert array.shape == (2, 2)
    body, headers = v2.encode_response(request.inputs, request, "m", None)
    assert headers == {"Content-Type": "application/json"}
    (output,) = orjson.loads(body)["outputs"]
    assert output == {"name": "x", "datatype": datatype, "shape": [2, 2], "data": SAMPLES[datatype]}


@pytest.mark.parametrize("datatype", SAMPLES)
def test_every_datatype_round_trips_as_binary(datatype):
    expected = v2.decode_request(infer_body(tensor("x", datatype, [4], SAMPLES[datatype])), None).inputs["x"]
    raw = tensors.to_binary(datatype, expected)
    header = infer_body(tensor("x", datatype, [4], binary_data_size=len(raw)))
    request = v2.decode_request(header + raw, str(len(header)))
    np.testing.assert_array_equal(request.inputs["x"], expected)
    request.parameters["binary_data_output"] = True
    body, headers = v2.encode_response(request.inputs, request, "m", None)
    length = int(headers[v2.HEADER_LENGTH])
    (output,) = orjson.loads(body[:length])["outputs"]
    assert output["parameters"] == {"binary_data_size": len(raw)} and "data" not in output
    assert body[length:] == raw


def test_binary_inputs_are_views_of_the_body_not_copies():
    raw = np.arange(6, dtype="<f4").tobytes()
    header = infer_body(tensor("x", "FP32", [2, 3], binary_data_size=len(raw)))
    body = header + raw
    array = v2.decode_request(body, str(len(header))).inputs["x"]
    assert not array.flags.owndata
    np.testing.assert_array_equal(array, [[0, 1, 2], [3, 4, 5]])


def test_bytes_binary_elements_are_length_prefixed():
    raw = struct.pack("<I", 2) + b"\x00\xff" + struct.pack("<I", 0)
    header = infer_body(tensor("b", "BYTES", [2], binary_data_size=len(raw)))
    array = v2.decode_request(header + raw, str(len(header))).inputs["b"]
    assert list(array) == [b"\x00\xff", b""]


def test_nested_json_data_is_accepted_like_flat_data():
    request = v2.decode_request(infer_body(tensor("x", "INT32", [2, 2], [[1, 2], [3, 4]])), None)
    np.testing.assert_array_equal(request.inputs["x"], [[1, 2], [3, 4]])


def test_request_id_parameters_and_outputs_reach_the_plugin_and_the_response():
    body = infer_body(
        tensor("x", "INT32", [1], [1], content_type="np"),
        id="req-7", parameters={"temperature": 0.5},
        outputs=[{"name": "y", "parameters": {"binary_data": True}}],
    )
    request = v2.decode_request(body, None)
    assert (request.id, request.parameters) == ("req-7", {"temperature": 0.5})
    assert request.input_parameters == {"x": {"content_type": "np"}}
    assert request.requested_outputs == {"y": {"binary_data": True}}
    result = {"y": np.array([1.0], dtype=np.float32), "z": np.array([2.0])}
    body, headers = v2.encode_response(result, request, "m", "3")
    header = orjson.loads(body[: int(headers[v2.HEADER_LENGTH])])
    assert header["id"] == "req-7" and [o["name"] for o in header["outputs"]] == ["y"]
    assert header["model_version"] == "3"


def test_a_bare_array_is_named_after_the_single_declared_output():
    request = v2.decode_request(infer_body(tensor("x", "FP32", [1], [1.0])), None)
    declared = {"outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}]}
    body, _ = v2.encode_response(v2.output_tensors(np.array([0.5], dtype=np.float32), declared), request, "m", None)
    assert orjson.loads(body)["outputs"][0]["name"] == "score"
    body, _ = v2.encode_response(v2.output_tensors(np.array([0.5], dtype=np.float32), {}), request, "m", None)
    assert orjson.loads(body)["outputs"][0]["name"] == "output-0"


@pytest.mark.parametrize(
    "body, header_length, message",
    [
        (b"{not json", None, "malformed JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (infer_body(), None, "'inputs' must be a non-empty list"),
        (infer_body(tensor("x", "FP32", [3], [1, 2])), None, "shape [3] holds 3 elements, data has 2"),
        (infer_body(tensor("x", "FP32", [-1], [1])), None, "shape must be a list of non-negative integers"),
        (infer_body(tensor("x", "FP31", [1], [1])), None, "unknown datatype 'FP31'"),
        (infer_body(tensor("x", ["FP32"], [1], [1])), None, "unknown datatype ['FP32']"),
        (infer_body(tensor("x", "FP32", [0, 2**63], [])), None, "no array can have shape [0, 9223372036854775808]"),
        (infer_body(tensor("x", "FP32", [1] * 65, [1])), None, "shape has 65 dimensions, more than 64"),
        (infer_body(tensor("x", "INT32", [1], [1.5])), None, "INT32 data cannot hold fractional numbers"),
        (infer_body(tensor("x", "INT8", [1], [128])), None, "outside the range of INT8"),
        (infer_body(tensor("x", "UINT8", [1], [-1])), None, "outside the range of UINT8"),
        (infer_body(tensor("x", "BOOL", [1], [1])), None, "BOOL data cannot hold"),
        (infer_body(tensor("x", "FP32", [1], ["a"])), None, "FP32 data cannot hold strings"),
        (infer_body(tensor("x", "BYTES", [1], [1])), None, "BYTES data must be UTF-8 strings"),
        (infer_body(tensor("x", "FP32", [2, 2], [[1, 2], [3]])), None, "not a rectangular array"),
        (infer_body(tensor("x", "FP32", [1])), None, "data must be a JSON array"),
        (infer_body(tensor("x", "FP32", [1], [1]), tensor("x", "FP32", [1], [1])), None, "given twice"),
        (infer_body(tensor("x", "FP32", [1], [1])), "9999", "Inference-Header-Content-Length is '9999'"),
        (infer_body(tensor("x", "FP32", [1], [1])) + b"junk", "0", "malformed JSON"),
    ],
)
def test_bad_v2_requests_are_refused_with_a_message_that_names_the_problem(body, header_length, message):
    with pytest.raises(InvalidInput) as caught:
        v2.decode_request(body, header_length)
    assert message in str(caught.value)


def binary_request(declared_size: int, actual: bytes, datatype="FP32", shape=(2,)):
    header = infer_body(tensor("x", datatype, list(shape), binary_data_size=declared_size))
    return header + actual, str(len(header))


@pytest.mark.parametrize(
    "body_and_length, message",
    [
        (binary_request(8, b"\0" * 4), "binary_data_size 8 runs past the body"),
        (binary_request(4, b"\0" * 4), "needs 8 bytes, binary_data_size is 4"),
        (binary_request(8, b"\0" * 12), "4 bytes that no input claims"),
        (binary_request(6, struct.pack("<I", 5) + b"ab", "BYTES", (1,)), "runs past binary_data_size"),
        (binary_request(2, b"ab", "BYTES", (1,)), "ends inside a length prefix"),
        (binary_request(4, struct.pack("<I", 0), "BYTES", (2,)), "shape holds 2 elements, binary data has 1"),
        (binary_request(0, b"", "FP32", (0, 2**62, 2**62)), "no array can have shape"),
    ],
)
def test_binary_sizes_that_lie_are_refused(body_and_length, message):
    with pytest.raises(InvalidInput) as caught:
        v2.decode_request(*body_and_length)
    assert message in str(caught.value)


def test_outputs_the_model_does_not_have_are_refused():
    request = v2.decode_request(infer_body(tensor("x", "FP32", [1], [1]), outputs=[{"name": "nope"}]), None)
    with pytest.raises(InvalidInput, match="has no output 'nope'"):
        v2.encode_response({"y": np.zeros(1)}, request, "m", None)


class Anything:
    pass


@pytest.mark.parametrize("result, message", [
    (np.ones(1, dtype=np.complex64), "output 'output-0' of dtype complex64, which the protocol cannot carry"),
    ({1, 2, 3}, "output 'output-0' holding a set ({1, 2, 3})"),
    ({"table": np.array([[1, "a"], [2, None]], dtype=object)}, "output 'table' holding a int (1)"),
    ({"thing": Anything()}, "output 'thing' holding a Anything"),
    ({"ragged": [[1, 2], [3]]}, "output 'ragged', which is not an array"),
])
def test_only_tensors_of_the_protocols_datatypes_are_outputs(result, message):
    with pytest.raises(ValueError) as caught:
        v2.output_tensors(result, {})
    assert message in str(caught.value)


def test_bytes_that_are_not_text_go_only_as_binary():
    outputs = v2.output_tensors({"b": np.array([b"\xff"], dtype=object)}, {})
    with pytest.raises(PluginError, match="model 'm': output 'b' holds BYTES that are not UTF-8 text"):
        v2.encode_response(outputs, InferenceRequest(protocol="v2"), "m", None)
    binary = InferenceRequest(protocol="v2", parameters={"binary_data_output": True})
    body, headers = v2.encode_response(outputs, binary, "m", None)
    assert body.endswith(b"\x01\x00\x00\x00\xff")


def test_floats_that_are_not_finite_are_null_in_json_and_exact_in_binary():
    special = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    assert orjson.loads(v1.encode_response(special)) == {"predictions": [None, None, None, 1.5]}
    body, _ = v2.encode_response({"y": special}, InferenceRequest(protocol="v2"), "m", None)
    assert orjson.loads(body)["outputs"][0]["data"] == [None, None, None, 1.5]
    binary = InferenceRequest(protocol="v2", parameters={"binary_data_output": True})
    body, headers = v2.encode_response({"y": special}, binary, "m", None)
    np.testing.assert_array_equal(np.frombuffer(body[int(headers[v2.HEADER_LENGTH]):], np.float32), special)


def test_v1_columns_must_have_a_row_for_each_instance():
    with pytest.raises(ValueError, match=r"columns of different lengths \('a': 3, 'b': 2\)"):
        v1.encode_response({"a": np.arange(3), "b": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"'label': no rows"):
        v1.encode_response({"label": "cat", "p": [0.5]})
    with pytest.raises(TypeError, match="predictions that JSON cannot carry"):
        v1.encode_response([{1, 2}])


def test_v1_takes_instances_or_inputs_and_answers_predictions():
    assert v1.decode_request(b'{"instances": [[1, 2]]}').instances == [[1, 2]]
    assert v1.decode_request(b'{"inputs": [3]}').instances == [3]
    assert orjson.loads(v1.encode_response(np.array([[1.5, 2.0]], dtype=np.float32))) == {"predictions": [[1.5, 2.0]]}
    rows = orjson.loads(v1.encode_response({"label": np.array(["cat", "dog"]), "p": np.array([0.5, 0.25])}))
    assert rows == {"predictions": [{"label": "cat", "p": 0.5}, {"label": "dog", "p": 0.25}]}


@pytest.mark.parametrize(
    "body, message",
    [(b"", "malformed JSON"), (b'{"instances": 3}', "'instances' (or 'inputs') as a JSON list"),
     (b'{"something": []}', "needs 'instances'"), (b'{"instances": [], "parameters": 1}', "'parameters'"),
     (b'{"instances": [], "parameters": 0}', "'parameters'")],
)
def test_bad_v1_requests_are_refused(body, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        v1.decode_request(body)

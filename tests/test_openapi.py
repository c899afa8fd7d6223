"""GET /openapi.json: a valid OpenAPI document for every route, and fuzzing from it never gets a 5xx.

The codecs are fuzzed on their own too, with bodies nearer to valid than an
HTTP fuzzer makes: whatever the bytes, decoding returns or raises InvalidInput.
"""

import inspect
import math
import re
import socket
import struct
from contextlib import suppress

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode, checks

from modelhost.http import app
from modelhost.errors import InvalidInput
from modelhost.protocol import tensors, v1, v2
from modelhost.protocol.openapi_model import model_document
from support import running_server

# Per operation and generation mode: enough to find what the fuzzers found so far, few enough that
# the file runs in seconds on two cores.
HTTP_EXAMPLES = 30
CODEC_EXAMPLES = 300


@pytest.fixture(scope="module")
def server(installed_env):
    with running_server("--replicas", "0", "--model", "echo", env=installed_env) as server:
        yield server


@pytest.fixture(scope="module")
def document(server):
    answer = requests.get(server.url + "/openapi.json", timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    return answer.json()


def test_the_served_document_is_valid_openapi(document):
    validate(document)
    assert document["paths"]["/v2/models/{name}/infer"]["parameters"][0]["schema"]["enum"] == ["echo"]


def test_every_route_is_documented(document):
    # Only the routes matter, so make_app's other arguments, whatever they are, can be None.
    application = app.make_app(**{**dict.fromkeys(inspect.signature(app.make_app).parameters), "docs_pages": True})
    patterns = [rule.matcher.regex.pattern for rule in application.wildcard_router.rules]
    for pattern in patterns:
        for path in documented_paths(pattern):
            assert path in document["paths"], f"route {pattern} has no path {path} in /openapi.json"


def documented_paths(pattern: str) -> list[str]:
    """The OpenAPI paths that a route's pattern stands for: with an optional version, both spellings, and
    any other named group as a path parameter."""
    pattern = pattern.removesuffix("$").replace(app.MODEL, "{name}")
    return sorted({re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern.replace(app.VERSION, version))
                   for version in ("", "/versions/{version}")})


def test_a_models_document_holds_its_routes_with_examples_of_its_declared_inputs():
    document = model_document("sums", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                                                  {"name": "mask", "datatype": "BOOL", "shape": [2]}]}, ["predict"])
    validate(document)
    assert "/v1/models/{name}:explain" not in document["paths"]  # the model has no explain hook: it would be 501
    assert "/v2/models/{name}/infer" in document["paths"] and "/v2/health/ready" not in document["paths"]
    assert not [path for path in document["paths"] if path.startswith("/v2/repository")]
    infer = document["paths"]["/v2/models/{name}/infer"]
    assert infer["parameters"][0]["schema"] == {"type": "string", "enum": ["sums"], "example": "sums"}
    assert infer["post"]["requestBody"]["content"]["application/json"]["example"]["inputs"] == [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0.5, 0.5, 0.5]},
        {"name": "mask", "shape": [2], "datatype": "BOOL", "data": [True, True]},
    ]
    predict = document["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert predict["example"] == {"instances": [{"x": [0.5, 0.5, 0.5], "mask": True}]}
    explains = model_document("sums", {}, ["predict", "explain"])
    assert "/v1/models/{name}:explain" in explains["paths"]


@pytest.fixture(scope="module")
def served_schema(server):
    # Unloading 'echo', should the fuzzer come up with the name, would leave the other cases nothing to call.
    # CUDA shared memory's routes answer one 400 whatever they are sent: not worth a fuzzer's examples.
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json").exclude(operation_id="v2RepositoryUnload") \
        .exclude(path_regex="^/v2/cudasharedmemory")
    schema.config.generation.update(modes=list(GenerationMode), max_examples=HTTP_EXAMPLES)
    return schema


fuzzed = schemathesis.pytest.from_fixture("served_schema")
# No 5xx, answers as documented, and a 4xx for what the document rules out. Not positive_data_acceptance:
# a body the document allows is still refused when its shape and data disagree, which no schema can say.
HTTP_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


NOT_ECHOS = {"POST /v1/models/{name}:explain", "POST /openai/v1/completions", "POST /openai/v1/chat/completions"}


@fuzzed.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_from_the_document_finds_no_server_error(case):
    if case.operation.label not in NOT_ECHOS:
        case.call_and_validate(checks=HTTP_CHECKS)
        return
    # echo has no explain or generate hook: its documented answer is 501, as KServe's; any other 5xx is an error.
    response = case.call()
    assert response.status_code < 500 or response.status_code == 501, response.text
    case.validate_response(response, checks=[check for check in HTTP_CHECKS if check is not checks.not_a_server_error])


@pytest.mark.parametrize("body", [
    b"{not json", b"\r", b"[]", b'{"parameters": []}', b'{"parameters": {"unload_dependents": "yes"}}',
    b'{"parameters": {"config": "{}"}}',
])
def test_a_malformed_unload_request_gets_400_and_unloads_nothing(server, body):
    answer = requests.post(server.url + "/v2/repository/models/echo/unload", data=body, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]
    assert requests.get(server.url + "/v2/models/echo/ready", timeout=10).status_code == 200


@pytest.mark.parametrize("content_length", [b"abc", b"1, 2", b"\xb2"])
def test_a_content_length_that_is_not_a_number_gets_400(server, content_length):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + content_length + b"\r\n\r\n{}"
        )
        assert connection.recv(100).startswith(b"HTTP/1.1 400 ")


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)  # what orjson writes
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
PROTOCOL_KEYS = st.sampled_from(["instances", "inputs", "parameters", "id", "outputs"]) | st.text(max_size=6)
JSON_OBJECTS = st.dictionaries(PROTOCOL_KEYS, JSON_VALUES, max_size=5).map(orjson.dumps)
DIMENSIONS = st.integers(0, 3) | st.sampled_from([-1, 2**31, 2**63, 2**64 - 1])
SHAPES = st.lists(DIMENSIONS, max_size=4) | st.just([1] * 65) | JSON_VALUES
DATATYPES = st.sampled_from([*tensors.DTYPES, "BYTES"]) | JSON_VALUES
ELEMENTS = st.sampled_from([st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=4)])
BINARY = st.binary(max_size=32) | st.lists(st.binary(max_size=6), max_size=4).map(
    lambda elements: b"".join(struct.pack("<I", len(element)) + element for element in elements)  # BYTES
)


@st.composite
def near_valid_v2_requests(draw) -> tuple[bytes, str | None]:
    """A V2 body whose parts are each plausible but need not agree: shape and data, sizes and bytes, header and body."""
    inputs, binary = [], b""
    for _ in range(draw(st.integers(1, 3))):
        shape = draw(SHAPES)
        tensor = {"name": draw(st.sampled_from(["x", "y"]) | JSON_VALUES), "datatype": draw(DATATYPES), "shape": shape}
        if draw(st.booleans()):
            count = math.prod(shape) if isinstance(shape, list) and all(type(dim) is int for dim in shape) else -1
            elements = draw(ELEMENTS)
            fits = st.lists(elements, min_size=count, max_size=count) if 0 <= count <= 16 else st.nothing()
            tensor["data"] = draw(fits | st.lists(elements, max_size=6) | JSON_VALUES)
        else:
            raw = draw(BINARY)
            binary += raw
            tensor["parameters"] = {"binary_data_size": draw(st.just(len(raw)) | st.integers(-1, 40) | JSON_VALUES)}
        inputs.append(tensor)
    header = orjson.dumps({"inputs": inputs, "parameters": draw(st.none() | st.just({"binary_data_output": True}))})
    length = draw(st.just(str(len(header))) | st.none() | st.integers(-1, 300).map(str) | st.text(max_size=4))
    return header + binary, length


CODEC_SETTINGS = settings(max_examples=CODEC_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CODEC_SETTINGS
@given(body=st.binary(max_size=64) | JSON_OBJECTS)
def test_v1_decodes_any_body_or_refuses_it_as_invalid_input(body):
    with suppress(InvalidInput):
        v1.decode_request(body)


@CODEC_SETTINGS
@given(body=st.binary(max_size=64) | JSON_OBJECTS, header_length=st.none() | st.text(max_size=4))
def test_v2_decodes_any_body_or_refuses_it_as_invalid_input(body, header_length):
    with suppress(InvalidInput):
        v2.decode_request(body, header_length)


@CODEC_SETTINGS
@given(request=near_valid_v2_requests())
def test_v2_decodes_near_valid_requests_or_refuses_them_as_invalid_input(request):
    with suppress(InvalidInput):
        v2.decode_request(*request)

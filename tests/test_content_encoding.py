"""Compressed bodies over HTTP, both ways, as Triton takes and gives them: gzip and deflate request bodies decoded
on every route that takes one, within --max_buffer_size however far they inflate; other codings refused with 415;
inference answers compressed for a client whose Accept-Encoding prefers gzip or deflate."""

import gzip
import http.client
import json
import re
import zlib
from typing import Optional

import numpy as np
import pytest
import tritonclient.http as triton

from support import running_server
from test_hostile_clients import ECHO, still_serving

COMPRESS = {"gzip": gzip.compress, "deflate": zlib.compress}  # deflate is zlib's format, as tritonclient sends it
DECOMPRESS = {"gzip": gzip.decompress, "deflate": zlib.decompress}
LIMIT = 10 * 2**20  # --max_buffer_size's default
ROUTES = ["/v1/models/echo:predict", "/v2/models/echo/infer", "/v2/repository/index"]
MANY = list(range(1000))  # answered with several kilobytes: enough to be compressed


@pytest.fixture(scope="module")
def server():
    with running_server(*ECHO) as server:
        yield server


def post(server, path: str, body, headers: dict) -> tuple[int, http.client.HTTPMessage, bytes]:
    """The status, headers and body exactly as sent: http.client decodes nothing, and asks for no coding."""
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=60)
    try:
        connection.request("POST", path, body, headers, encode_chunked=not isinstance(body, bytes))
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def request_for(path: str, values: list) -> bytes:
    if path.startswith("/v1/"):
        return json.dumps({"instances": values}).encode()
    if path.endswith("/infer"):
        tensor = {"name": "x", "datatype": "INT64", "shape": [len(values)], "data": values}
        return json.dumps({"inputs": [tensor]}).encode()
    return json.dumps({"ready": True}).encode()


def doubled(path: str, answer: bytes) -> list:
    parsed = json.loads(answer)
    return parsed["predictions"] if path.startswith("/v1/") else parsed["outputs"][0]["data"]


@pytest.mark.parametrize("path", ROUTES[:2])
def test_nothing_changes_for_a_client_that_names_no_coding_or_identity(server, path):
    for headers in ({}, {"Content-Encoding": "identity", "Accept-Encoding": "identity"}):
        status, answer_headers, body = post(server, path, request_for(path, MANY), headers)
        assert (status, doubled(path, body)) == (200, [2 * value for value in MANY])
        assert answer_headers["Content-Encoding"] is None


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritons_client_compresses_its_requests_and_reads_compressed_answers(server, coding, binary):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.arange(2000, dtype=np.float32).reshape(2, 1000)
    data = triton.InferInput("x", [2, 1000], "FP32")
    data.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("echo", [data], outputs=[triton.InferRequestedOutput("x", binary_data=binary)],
                          request_compression_algorithm=coding, response_compression_algorithm=coding)
    np.testing.assert_array_equal(result.as_numpy("x"), x * 2)
    # An error is never compressed: tritonclient reads an error's body as it comes.
    with pytest.raises(triton.InferenceServerException, match="'nobody' is not served here"):
        client.infer("nobody", [data], request_compression_algorithm=coding, response_compression_algorithm=coding)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_binary_tensors_header_length_counts_the_decoded_body_both_ways(server, coding):
    x = np.arange(3000, dtype=np.float32)
    data = triton.InferInput("x", [3000], "FP32")
    data.set_data_from_numpy(x, binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [data], outputs=[triton.InferRequestedOutput("x", binary_data=True)])
    status, headers, answer = post(server, "/v2/models/echo/infer", COMPRESS[coding](body), {
        "Content-Encoding": coding, "Accept-Encoding": coding, "Inference-Header-Content-Length": str(json_size),
        "Content-Type": "application/octet-stream"})
    assert status == 200, answer
    assert (headers["Content-Encoding"], headers["Vary"]) == (coding, "Accept-Encoding")
    assert len(answer) < x.nbytes  # compressed, not merely labelled
    result = triton.InferenceServerClient.parse_response_body(
        DECOMPRESS[coding](answer), header_length=int(headers["Inference-Header-Content-Length"]))
    np.testing.assert_array_equal(result.as_numpy("x"), x * 2)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "x-gzip", "GZIP", "identity, gzip"])
@pytest.mark.parametrize("path", ROUTES)
def test_compressed_request_bodies_are_decoded_on_every_route_that_takes_one(server, coding, path):
    algorithm = "deflate" if "deflate" in coding else "gzip"
    status, _, body = post(server, path, COMPRESS[algorithm](request_for(path, [1, 2])), {"Content-Encoding": coding})
    assert status == 200, body
    if path == "/v2/repository/index":
        assert {"name": "echo", "state": "READY", "reason": ""} in json.loads(body)
    else:
        assert doubled(path, body) == [2, 4]


@pytest.mark.parametrize("path", ROUTES[:2])
def test_a_compressed_body_sent_chunked_is_decoded_whole(server, path):
    compressed = gzip.compress(request_for(path, MANY))
    pieces = iter([compressed[start:start + 100] for start in range(0, len(compressed), 100)])
    status, _, body = post(server, path, pieces, {"Content-Encoding": "gzip"})
    assert (status, doubled(path, body)) == (200, [2 * value for value in MANY])


@pytest.mark.parametrize("accept, coding", [
    ("gzip", "gzip"), ("deflate", "deflate"), ("gzip;q=0.5, deflate", "deflate"), ("br, x-gzip;q=0.2", "gzip"),
    ("deflate, gzip", "deflate"), ("*", "gzip"), ("identity;q=0.1, gzip; q=0.8", "gzip"),
    ("identity", None), ("gzip;q=0", None), ("identity, gzip;q=0.9", None), ("br, zstd", None), ("gzip;q=x", None),
])
@pytest.mark.parametrize("path", ROUTES[:2])
def test_answers_are_compressed_as_accept_encoding_prefers(server, path, accept, coding: Optional[str]):
    status, headers, body = post(server, path, request_for(path, MANY), {"Accept-Encoding": accept})
    assert status == 200
    assert (headers["Content-Encoding"], headers["Vary"]) == (coding, "Accept-Encoding")
    decoded = DECOMPRESS[coding](body) if coding else body
    if coding:
        assert len(body) < len(decoded)
    assert doubled(path, decoded) == [2 * value for value in MANY]


def test_small_answers_and_errors_are_sent_as_they_are(server):
    status, headers, body = post(server, ROUTES[0], request_for(ROUTES[0], [1]), {"Accept-Encoding": "gzip"})
    assert (status, json.loads(body), headers["Content-Encoding"]) == (200, {"predictions": [2]}, None)
    status, headers, body = post(server, "/v1/models/nobody:predict", request_for(ROUTES[0], MANY),
                                 {"Accept-Encoding": "gzip"})
    assert (status, headers["Content-Encoding"]) == (404, None)
    assert "'nobody' is not served here" in json.loads(body)["error"]


@pytest.mark.parametrize("path", ROUTES)
def test_bodies_that_are_not_what_their_coding_says_get_400(server, path):
    plain = request_for(path, [1])
    whole = gzip.compress(plain)
    for coding, body, complaint in [("gzip", plain, "is not gzip data"), ("deflate", plain, "is not deflate data"),
                                    ("gzip", zlib.compress(plain), "is not gzip data"),
                                    ("gzip", whole[:-6], "cut short"), ("gzip", whole + b"{}", "goes on after")]:
        status, headers, answer = post(server, path, body, {"Content-Encoding": coding})
        assert (status, headers["Content-Type"]) == (400, "application/json"), (coding, body)
        assert complaint in json.loads(answer)["error"], answer
    still_serving(server)


@pytest.mark.parametrize("coding", ["br", "compress", "x-foo", "zstd", "gzip, gzip"])
@pytest.mark.parametrize("path", ROUTES)
def test_other_codings_get_415_naming_those_taken(server, path, coding):
    status, headers, answer = post(server, path, request_for(path, [1]), {"Content-Encoding": coding})
    assert (status, headers["Accept-Encoding"]) == (415, "gzip, deflate")
    assert re.search(r"content cod", json.loads(answer)["error"]), answer
    still_serving(server)


def bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped: about a thousandth of that."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = bytes(min(size, 2**20))
    return b"".join(compressor.compress(piece) for _ in range(size // len(piece))) + compressor.flush()


@pytest.mark.parametrize("path", ROUTES)
def test_a_small_body_that_inflates_past_max_buffer_size_gets_413(server, path):
    small = bomb(LIMIT + 2**20)
    assert len(small) < 16 * 2**10
    status, _, answer = post(server, path, small, {"Content-Encoding": "gzip"})
    assert status == 413
    assert json.loads(answer) == {"error": f"the request body is larger than max_buffer_size ({LIMIT} bytes)"}


def test_a_gzip_bomb_is_refused_having_held_about_the_limit(server):
    large = bomb(256 * 2**20)  # 256 KiB that inflate to 256 MiB
    for path in ROUTES:
        before = peak_memory(server.process.pid)
        status, _, answer = post(server, path, large, {"Content-Encoding": "gzip"})
        assert status == 413, answer
        # The limit's worth of decoded bytes and the allocator's slack (a thread decoding for the first time does so
        # in a malloc arena of its own), where inflating it all would take 256 MiB.
        grown = peak_memory(server.process.pid) - before
        assert grown < 3 * LIMIT, f"{path}: the server's peak memory grew by {grown / 2**20:.0f} MiB"
    still_serving(server)


def peak_memory(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux's VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        [kilobytes] = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    return int(kilobytes) * 1024

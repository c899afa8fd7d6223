"""Every answer keeps its connection usable, or says ``Connection: close``; bodies over the limit always get 413.

The server closes a connection only when it must: when it answered before reading a body that follows.
"""

import re

import orjson
import pytest

from support import running_server
from test_hostile_clients import closed_by_server, connect

SERVER = ["--replicas", "0", "--plugin", "echo=fixture_plugins.behaving:Doubler", "--max_buffer_size", "10000"]
PREDICT = b'{"instances": [1]}'


@pytest.fixture(scope="module")
def server():
    with running_server(*SERVER) as server:
        yield server


def request(method: bytes, path: bytes, body: bytes = b"", *headers: bytes) -> bytes:
    length = [b"Content-Length: %d" % len(body)] if body else []
    return b"\r\n".join([b"%s %s HTTP/1.1" % (method, path), b"Host: test", *length, *headers, b"", body])


def answers(received: bytes) -> list[tuple[int, dict, bytes]]:
    """The status, headers (names lower-cased) and body of each answer in what a connection received."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
        length = int(headers["content-length"])
        found.append((int(status_line.split()[1]), headers, rest[:length]))
        received = rest[length:]
    return found


def test_errors_found_in_the_headers_of_requests_without_a_body_keep_the_connection(server):
    connection = connect(server)
    pipelined = [request(b"GET", b"/v2/models/echo/settings"), request(b"GET", b"/v2/models/echo/infer"),
                 request(b"GET", b"/v2/models/nobody"), request(b"DELETE", b"/v2"),
                 request(b"POST", b"/v1/models/echo:predict", PREDICT, b"Connection: close")]
    connection.sendall(b"".join(pipelined))
    got = answers(closed_by_server(connection))
    assert [status for status, _, _ in got] == [404, 405, 404, 405, 200]
    assert [headers.get("connection") for _, headers, _ in got] == [None, None, None, None, "close"]
    assert all("error" in orjson.loads(body) for _, _, body in got[:4])


@pytest.mark.parametrize("refused", [
    request(b"POST", b"/v2/nothing/here", PREDICT),
    request(b"POST", b"/v2/models/echo/infer", b"x" * 20000),
    request(b"PUT", b"/v1/models/echo:predict", PREDICT),
], ids=["unknown path", "too large", "wrong method"])
def test_an_answer_given_before_its_body_was_read_says_connection_close(server, refused):
    connection = connect(server)
    connection.sendall(refused + request(b"GET", b"/v2/health/live"))
    [(status, headers, body)] = answers(closed_by_server(connection))
    assert status in (404, 405, 413) and headers["connection"] == "close"
    assert "error" in orjson.loads(body)


def chunked(path: bytes, body: bytes, pieces: int) -> bytes:
    size = -(-len(body) // pieces)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i:i + size] for i in range(0, len(body), size)))
    return request(b"POST", path, b"", b"Transfer-Encoding: chunked") + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("size", [17_000, 33_000, 1_000_000])
@pytest.mark.parametrize("pieces", [1, 50])
@pytest.mark.parametrize("path", [b"/v2/models/echo/infer", b"/v2/repository/index"])
def test_a_chunked_body_over_the_limit_always_gets_413_json_and_one_log_line(server, size, pieces, path):
    connection = connect(server)
    connection.sendall(chunked(path, b"x" * size, pieces))
    [(status, headers, body)] = answers(closed_by_server(connection))
    assert (status, headers["connection"]) == (413, "close")
    assert orjson.loads(body) == {"error": "the request body is larger than max_buffer_size (10000 bytes)"}
    request_id = headers["x-request-id"]
    server.wait_for_log(re.compile(rf"access: 413 POST {path.decode()} .*request_id={request_id}"))
    about_it = [line for line in server.log.splitlines() if request_id in line]
    assert len(about_it) == 2, about_it  # the refusal, with its reason, and the access line
    assert "Malformed HTTP message" not in server.log


def test_a_declared_length_far_over_the_limit_gets_413_without_a_malformed_message(server):
    connection = connect(server)
    connection.sendall(request(b"POST", b"/v2/models/echo/infer", b"", b"Content-Length: 50000"))
    connection.sendall(b"x" * 50000)
    [(status, headers, _)] = answers(closed_by_server(connection))
    assert (status, headers["connection"]) == (413, "close")
    server.wait_for_log(re.compile(rf"access: 413 .*request_id={headers['x-request-id']}"))
    assert "Malformed HTTP message" not in server.log


def test_the_server_serves_on_after_all_of_it(server):
    connection = connect(server)
    connection.sendall(request(b"POST", b"/v1/models/echo:predict", PREDICT, b"Connection: close"))
    [(status, _, body)] = answers(closed_by_server(connection))
    assert (status, orjson.loads(body)) == (200, {"predictions": [2]})


def test_pipelined_requests_on_every_kind_of_route_are_answered_in_order(server):
    connection = connect(server)
    chunked_predict = request(b"POST", b"/v1/models/echo:predict", b"", b"Transfer-Encoding: chunked") + \
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(b'{"instances": [2]}'), b'{"instances": [2]}')
    connection.sendall(b"".join([
        request(b"POST", b"/v1/models/echo:predict", PREDICT), request(b"GET", b"/v2/health/live"),
        chunked_predict, request(b"GET", b"/v2/models/echo/ready"),
        request(b"POST", b"/v1/models/echo:predict", b'{"instances": [3]}', b"Connection: close")]))
    got = answers(closed_by_server(connection))
    assert [(status, orjson.loads(body)) for status, _, body in got] == [
        (200, {"predictions": [2]}), (200, {"live": True}), (200, {"predictions": [4]}),
        (200, {"name": "echo", "ready": True}), (200, {"predictions": [6]})]


def test_a_client_that_expects_100_continue_gets_it_before_it_sends_the_body(server):
    connection = connect(server)
    connection.sendall(request(b"POST", b"/v1/models/echo:predict", b"", b"Content-Length: %d" % len(PREDICT),
                               b"Expect: 100-continue", b"Connection: close"))
    assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.sendall(PREDICT)
    [(status, _, body)] = answers(closed_by_server(connection))
    assert (status, orjson.loads(body)) == (200, {"predictions": [2]})


def test_http_1_0_keeps_its_connection_only_when_it_asks_to(server):
    def one_point_zero(*headers: bytes) -> bytes:
        return b"\r\n".join([b"POST /v1/models/echo:predict HTTP/1.0", b"Content-Length: %d" % len(PREDICT),
                             *headers, b"", PREDICT])

    connection = connect(server)
    connection.sendall(one_point_zero(b"Connection: keep-alive") + one_point_zero())
    got = answers(closed_by_server(connection))
    assert [(status, headers.get("connection")) for status, headers, _ in got] == [(200, "Keep-Alive"), (200, None)]


@pytest.mark.parametrize("bad, status, error", [
    (b"GET /v2/health/live HTTP/1.1\r\nX-Large: " + b"x" * 70000 + b"\r\n\r\n", 431,
     "the request line and headers are larger than 65536 bytes"),
    (b"GET /v2/health/live HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "malformed HTTP request: Invalid header token"),
    (b"GET /v2/health/live HTTP/1.1\r\n\r\n", 400, "malformed HTTP request: Missing Host header"),
], ids=["headers too large", "malformed", "no host"])
def test_bytes_that_are_not_a_request_are_refused_after_the_answers_before_them(server, bad, status, error):
    connection = connect(server)
    connection.sendall(request(b"POST", b"/v1/models/echo:predict", PREDICT) + bad)
    got = answers(closed_by_server(connection))
    assert [(status, orjson.loads(body)) for status, _, body in got] == [
        (200, {"predictions": [2]}), (status, {"error": error})]
    assert got[1][1]["connection"] == "close"
    assert "Traceback" not in server.log


def test_hundreds_of_pipelined_requests_in_one_send_are_all_answered_in_order(server):
    connection = connect(server)
    predicts = [request(b"POST", b"/v1/models/echo:predict", b'{"instances": [%d]}' % n) for n in range(500)]
    connection.sendall(b"".join(predicts) + request(b"GET", b"/v2/health/live", b"", b"Connection: close"))
    got = answers(closed_by_server(connection))
    assert [orjson.loads(body) for _, _, body in got] == [{"predictions": [2 * n]} for n in range(500)] + [{"live": True}]

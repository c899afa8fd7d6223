"""The server's connections: a body of known length reaches the handler whole, however it arrives; the server's
own limits hold under a handler that applies none; requests to switch protocols are answered over HTTP/1.1."""

import asyncio
import hashlib
import json
import socket

import numpy as np
import pytest
import requests
import tornado.httputil
import tornado.netutil
import tornado.web

from fixture_plugins import behaving
from modelhost.http.httpserver import HTTPServer
from modelhost.testing import served
from support import running_server
from test_hostile_clients import closed_by_server


@tornado.web.stream_request_body
class CountsPieces(tornado.web.RequestHandler):
    def prepare(self):
        self.pieces: list[int] = []
        self.digest = hashlib.sha256()

    def data_received(self, chunk):
        self.pieces.append(len(chunk))
        self.digest.update(chunk)

    def post(self):
        self.write({"pieces": self.pieces, "sha256": self.digest.hexdigest()})


def request(body: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join([b"POST / HTTP/1.1", b"Host: test", b"Content-Length: %d" % len(body), *headers, b"", body])


async def exchange(*pieces: bytes, max_body_size: int = 2**30) -> bytes:
    """Sends the pieces with pauses between them, so that each arrives on its own; returns all that comes back
    until the server closes the connection."""
    [listening] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = HTTPServer(tornado.web.Application([("/", CountsPieces)]), max_body_size=max_body_size)
    await server.listen([listening])
    reader, writer = await asyncio.open_connection(*listening.getsockname())
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.002)
    answers = await asyncio.wait_for(reader.read(), 30)
    server.stop()
    await server.close_all_connections()
    return answers


def answer_bodies(answers: bytes) -> list[dict]:
    return [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in answers.split(b"HTTP/1.1 ")[1:]]


def test_a_body_sent_in_pieces_reaches_the_handler_as_one_and_the_next_request_still_follows():
    body = np.random.default_rng(0).bytes(3 * 2**20)
    first = request(body)
    # The headers alone, then the body in 64 pieces, the last one followed at once by a second request.
    pieces = [first[:first.index(b"\r\n\r\n") + 4]]
    pieces += [body[i:i + len(body) // 64] for i in range(0, len(body), len(body) // 64)]
    pieces[-1] += request(b"tail", b"Connection: close")
    answers = answer_bodies(asyncio.run(exchange(*pieces)))
    assert answers == [
        {"pieces": [len(body)], "sha256": hashlib.sha256(body).hexdigest()},
        {"pieces": [4], "sha256": hashlib.sha256(b"tail").hexdigest()},
    ]


@pytest.mark.parametrize("framing", [b"Content-Length: 2000\r\n\r\n" + b"x" * 2000,
                                     b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n"],
                         ids=["declared", "chunked"])
def test_a_body_over_the_limit_gets_the_servers_own_413_when_its_handler_does_not_count(framing):
    head, _, body = asyncio.run(exchange(b"POST / HTTP/1.1\r\nHost: test\r\n" + framing, max_body_size=500)) \
        .partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close" in head
    assert json.loads(body) == {"error": "the request body is larger than max_buffer_size (500 bytes)"}


def test_a_request_to_switch_protocols_is_answered_over_http_1_1_and_its_connection_closed():
    switching = request(b"", b"Connection: Upgrade", b"Upgrade: websocket")
    answers = asyncio.run(exchange(switching + b"\x81\x05bytes of another protocol"))
    assert answer_bodies(answers) == [{"pieces": [], "sha256": hashlib.sha256(b"").hexdigest()}]  # no 400 after it


def binary_infer(x: np.ndarray) -> tuple[bytes, dict]:
    """A V2 request body carrying x as a binary tensor, and its headers; binary output is asked for."""
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), {"Content-Type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(header))}


def binary_output(body: bytes, headers) -> np.ndarray:
    json_length = int(headers["Inference-Header-Content-Length"])
    [output] = json.loads(body[:json_length])["outputs"]
    return np.frombuffer(body[json_length:], np.float32).reshape(output["shape"])


def test_a_large_v2_binary_tensor_arriving_in_pieces_comes_back_right():
    x = np.random.default_rng(1).random((4, 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer(x)
    head = b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: %d\r\n" % len(body)
    head += b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers.items()) + b"\r\n"
    with served(behaving.Doubler(), "echo") as server:
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        connection.sendall(head)
        for start in range(0, len(body), 2**20):
            connection.sendall(body[start:start + 2**20])
        answer = closed_by_server(connection)
    head, answer_body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    answer_headers = tornado.httputil.HTTPHeaders.parse(head.split(b"\r\n", 1)[1].decode())
    np.testing.assert_array_equal(binary_output(answer_body, answer_headers), x * 2)


def test_binary_tensors_are_the_plugins_to_change_in_place_whether_the_body_came_whole_or_chunked(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, headers = binary_infer(x)
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:DoublesInPlace") as server:
        url = server.url + "/v2/models/DoublesInPlace/infer"
        for data in (body, iter([body[:10], body[10:]])):  # the second goes chunked
            answer = requests.post(url, data=data, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            np.testing.assert_array_equal(binary_output(answer.content, answer.headers), x * 2)

"""Request bodies that do not arrive within ``--body_timeout``: answered 408, then the connection closed; a client
that has left by then is not answered, and nothing fails for it."""

import socket
import struct

from support import running_server

ECHO = ["--replicas", "0", "--plugin", "echo=fixture_plugins.behaving:Doubler", "--body_timeout", "1"]


def late(server, path: str, request_id: str) -> socket.socket:
    """A connection whose request declares 100 bytes of body and sends 4."""
    connection = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30)
    connection.sendall(b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\nX-Request-Id: %s\r\n\r\n{\"in"
                       % (path.encode(), request_id.encode()))
    return connection


def until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_late_body_on_any_route_gets_408_and_a_client_gone_by_then_gets_nothing_and_breaks_nothing():
    with running_server(*ECHO) as server:
        gone = late(server, "/v1/models/echo:predict", "gone-1")
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closes with a reset
        gone.close()
        # Late after the one gone, so that its deadline is checked first: by the time this one is answered.
        repository = late(server, "/v2/repository/models/echo/load", "late-2")
        head, _, body = until_closed(repository).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"\r\nX-Request-Id: late-2" in head
        assert body == b'{"error":"the request body did not arrive within body_timeout (1s)"}'
        server.wait_for_log("408 POST /v2/repository/models/echo/load")
        assert "request_id=gone-1" not in "".join(line for line in server.lines if " 408 " in line)
        assert "Traceback" not in server.log and "Exception in callback" not in server.log, server.log

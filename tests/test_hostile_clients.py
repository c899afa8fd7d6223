"""Clients that misbehave: slow or idle connections, bodies that lie about their length, odd paths, no token.

The server answers each with the right status, or drops the connection after
its timeout, and goes on serving everyone else.
"""

import re
import socket
import time

import requests

from support import plugin_env, running_server

ECHO = ["--replicas", "0", "--plugin", "echo=fixture_plugins.behaving:Doubler"]


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30)


def closed_by_server(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds the wait)."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def still_serving(server) -> None:
    answer = requests.post(server.url + "/v1/models/echo:predict", json={"instances": [1]}, timeout=10)
    assert answer.json() == {"predictions": [2]}


def test_connections_that_stall_in_their_headers_are_dropped_in_their_body_get_408_and_the_rest_are_served():
    with running_server(*ECHO, "--idle_timeout", "1", "--body_timeout", "1") as server:
        idle = [connect(server) for _ in range(50)]  # never send a byte
        half_headers = connect(server)
        half_headers.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: test\r\n")
        half_body = connect(server)
        half_body.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n"
                          b"X-Request-Id: late-1\r\n\r\n{\"inst")
        still_serving(server)
        started = time.monotonic()
        assert closed_by_server(half_headers) == b""
        head, _, body = closed_by_server(half_body).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert {b"Connection: close", b"Content-Type: application/json", b"X-Request-Id: late-1"} <= \
            set(head.split(b"\r\n"))
        assert body == b'{"error":"the request body did not arrive within body_timeout (1s)"}'
        server.wait_for_log(re.compile(r"modelhost.access: 408 POST /v1/models/echo:predict .*request_id=late-1"))
        assert not [line for line in server.lines if "late-1" in line and " 499 " in line], server.log
        assert all(closed_by_server(connection) == b"" for connection in idle)
        assert time.monotonic() - started < 30
        still_serving(server)


def test_bodies_shorter_or_longer_than_their_content_length_and_lengths_that_are_not_numbers():
    with running_server(*ECHO) as server:
        short = connect(server)
        short.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: test\r\nContent-Length: 50\r\n\r\n{\"instances\"")
        short.shutdown(socket.SHUT_WR)  # the client gives up halfway: nothing to answer, nothing may hang
        assert closed_by_server(short) == b""

        longer = connect(server)  # the bytes past Content-Length are read as a next request, which is garbage
        longer.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: test\r\nContent-Length: 18\r\n\r\n"
                       b"{\"instances\": [1]}garbage\r\n\r\n")
        replies = closed_by_server(longer)
        assert replies.startswith(b"HTTP/1.1 200") and b'{"predictions":[2]}' in replies
        assert b"HTTP/1.1 400" in replies

        for length in (b"abc", b"-1", b"1, 2"):
            lying = connect(server)  # raw: HTTP clients write the true length whatever they are told
            lying.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: test\r\nContent-Length: %s\r\n\r\n"
                          b'{"instances": [1]}' % length)
            assert closed_by_server(lying).startswith(b"HTTP/1.1 400"), length
        still_serving(server)


def test_model_names_with_path_characters_are_unknown_models_not_paths():
    with running_server(*ECHO) as server:
        for path in ("/v2/models/..%2F..%2Fetc%2Fpasswd/infer", "/v2/models/%2e%2e/ready",
                     "/v1/models/echo%2Fx:predict", "/v2/models/echo%00/infer", "/v1/models/a/b:predict"):
            answer = requests.post(server.url + path, json={"instances": [1]}) if "predict" in path or "infer" in path \
                else requests.get(server.url + path)
            assert answer.status_code == 404, path
            assert "error" in answer.json()
        still_serving(server)


def test_a_wrong_method_gets_405_naming_the_methods_the_path_takes():
    with running_server(*ECHO) as server:
        answer = requests.get(server.url + "/v1/models/echo:predict")
        assert answer.status_code == 405
        assert answer.headers["Allow"] == "POST"
        assert "error" in answer.json()


def test_with_a_token_set_every_request_but_the_health_checks_needs_it():
    env = {**plugin_env(), "MODELHOST_AUTH_TOKEN": "s3cret-token"}
    with running_server(*ECHO, env=env) as server:
        url = server.url + "/v1/models/echo:predict"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            refused = requests.post(url, json={"instances": [1]}, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error" in refused.json()
        for path in ("/metrics", "/openapi.json", "/docs", "/v2/models/echo/docs/openapi.json"):
            assert requests.get(server.url + path).status_code == 401, path
        allowed = requests.post(url, json={"instances": [1]}, headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.json() == {"predictions": [2]}
        for probe in ("/", "/v2/health/live", "/v2/health/ready", "/v2/models/echo/ready", "/v1/models/echo"):
            assert requests.get(server.url + probe).status_code == 200, probe

"""http/httpserver.py restates two of Tornado's methods and overrides others, relying on how the rest of its
HTTP/1 connection reads and writes. These are the upstream sources it was written against (Tornado 6.6.1): a
change to any of them fails here, so that it is reviewed before it reaches a server."""

import hashlib
import inspect

import pytest
import tornado.http1connection
import tornado.httpserver

Connection = tornado.http1connection.HTTP1Connection
UPSTREAM = {
    # Restated, naming modelhost's connection classes.
    tornado.http1connection.HTTP1ServerConnection._server_request_loop: "878caf064d85d615",
    tornado.httpserver.HTTPServer.handle_stream: "164864e68f57d899",
    # Overridden, calling up to Tornado's own.
    Connection.write_headers: "0cfc1ef0b6793acd",
    Connection._finish_request: "e3d5be7a8e4cbc42",
    Connection._read_body: "1528c84d5034bc55",
    Connection._read_fixed_body: "2a06096e26a20136",
    Connection._read_chunked_body: "bb6888d2ff152ee9",
    # Relied upon: when the body is read, finish and close, and in what order.
    Connection.finish: "06764160f2a948ce",
    Connection._read_message_inner: "823ab7277a0b5056",
}


@pytest.mark.parametrize("method", UPSTREAM, ids=lambda method: method.__qualname__)
def test_the_tornado_methods_the_server_builds_on_are_those_it_was_written_against(method):
    digest = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]
    assert digest == UPSTREAM[method], (
        f"Tornado {tornado.version} changed {method.__qualname__}: review host/modelhost/http/httpserver.py "
        f"against it, then record its new digest {digest} here")

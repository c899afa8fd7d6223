"""bare_tornado.py's handlers behind another HTTP/1.1 layer: httptools on an ``asyncio.Protocol``, on uvloop.

    python bench/peers/bare_httptools.py PORT

Tornado's ``web.Application`` and ``RequestHandler`` as they are, fed by
httptools' parser (uvicorn's) where Tornado's ``HTTP1Connection`` and
``IOStream`` would read: a request's bytes are parsed in C, and no future or
coroutine is made per read. What it leaves out (a measurement, not a server):
limits, timeouts, flow control, pipelining (a request that arrives before the
one before it is answered is parsed and answered in turn, at once), TLS.
Against ``bare_tornado.py`` it says what an HTTP/1.1 front end below
Tornado's handlers gains; modelhost's own (``host/modelhost/http/connection.py``)
is one, with what a server must keep.
"""

import asyncio
import sys
from pathlib import Path

import httptools
import tornado.httputil
import tornado.web
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bare_tornado  # noqa: E402  (the same handlers)


class Context:
    """What a request's handler reads of its connection (``HTTPServerRequest.remote_ip``, ``protocol``)."""

    remote_ip = "127.0.0.1"
    protocol = "http"


class Exchange(tornado.httputil.HTTPConnection):
    """One request's side of the connection, as Tornado's handlers write to it (and modelhost's exchanges, with
    ``write_answer``): an answer whole, or chunked when a handler flushes before it knows its length."""

    def __init__(self, transport: asyncio.Transport, keep_alive: bool, method: str):
        self.transport = transport
        self.keep_alive = keep_alive
        self.method = method
        self.context = Context()
        self.chunked = False

    def set_close_callback(self, callback) -> None:
        pass

    def write_answer(self, status: int, reason: str, headers: list, body: bytes) -> None:
        lines = [b"HTTP/1.1 %d %s" % (status, reason.encode("latin1")),
                 *(f"{name}: {value}".encode("latin1") for name, value in headers),
                 *([] if self.keep_alive else [b"Connection: close"]), b"", b"" if self.method == "HEAD" else body]
        self.transport.write(b"\r\n".join(lines))
        self.finish()

    def write_headers(self, start_line, headers, chunk=None):
        if "Content-Length" not in headers:
            headers["Transfer-Encoding"] = "chunked"
            self.chunked = True
        if not self.keep_alive:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}",
                 *(f"{name}: {value}" for name, value in headers.get_all())]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))
        return self.write(chunk)

    def write(self, chunk: bytes, callback=None):
        if chunk:
            self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def finish(self) -> None:
        if self.chunked:
            self.transport.write(b"0\r\n\r\n")
        if not self.keep_alive:
            self.transport.close()


class Connection(asyncio.Protocol):
    def __init__(self, application: tornado.web.Application):
        self.application = application
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    # httptools' callbacks, in the order they come for each request.

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = tornado.httputil.HTTPHeaders()
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin1"), value.decode("latin1"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        exchange = Exchange(self.transport, self.parser.should_keep_alive(), method)
        delegate = self.application.start_request(None, exchange)
        start_line = tornado.httputil.RequestStartLine(method, self.url.decode("latin1"),
                                                       f"HTTP/{self.parser.get_http_version()}")
        delegate.headers_received(start_line, self.headers)
        if self.body:
            delegate.data_received(bytearray(b"".join(self.body)))  # writable, as modelhost's bodies are
        delegate.finish()


def main() -> None:
    application = tornado.web.Application([(r"/", bare_tornado.Alive),
                                           (r"/v1/models/echo:predict", bare_tornado.Predict)])
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_server(lambda: Connection(application), "127.0.0.1", int(sys.argv[1])))
    loop.run_forever()


if __name__ == "__main__":
    main()

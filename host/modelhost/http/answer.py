"""One request's answer, as Tornado's handlers and the inference exchanges write it.

``Answer`` is the ``request.connection`` that a handler sees (Tornado's
``HTTPConnection`` interface): the status line and headers, the body whole or
in chunks, then ``finish``. It writes to its client's ``connection.Connection``,
which decides what happens after the answer: the next request on the same
connection, or a close.
"""

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import tornado.httputil
from tornado.iostream import StreamClosedError

if TYPE_CHECKING:
    from .connection import Connection

# Answers whose status forbids a body (RFC 9110, 6.4.1): no Content-Length, no chunks.
BODILESS = frozenset((204, 304)) | frozenset(range(100, 200))


@dataclass(frozen=True)
class Peer:
    """Who is at the other end, as ``HTTPServerRequest`` reads it from its connection's ``context``."""

    remote_ip: str
    protocol: str  # "http" or "https"

    def __str__(self) -> str:  # as Tornado's context prints in its log lines
        return self.remote_ip


def head(status: int, reason: str, headers: Iterable[tuple[str, str]]) -> list[bytes]:
    """An answer's status line and header lines, each made once."""
    return [b"HTTP/1.1 %d %s" % (status, reason.encode("latin1")),
            *(f"{name}: {value}".encode("latin1") for name, value in headers)]


class Answer(tornado.httputil.HTTPConnection):
    """The answer to one request: written once, whole (``write_answer``) or in parts (``write_headers``,
    ``write``, ``finish``).

    An answer written before its request's body was read says ``Connection:
    close`` (the connection then lingers: ``Turns.answered``); so does one
    to a request that asked to close. A 1.1 answer of unknown length is sent in
    chunks.
    """

    def __init__(self, connection: "Connection", method: str, version: str, keep_alive: bool, body_follows: bool):
        self.connection = connection
        self.context = connection.peer
        self.method = method
        self.version = version
        self.keep_alive = keep_alive
        self.body_follows = body_follows  # the request has a body that is not read yet
        self.close_callback: Optional[Callable[[], None]] = None
        self.started = False  # the status line is written
        self.finished = False
        self.chunked = False
        self.remaining: Optional[int] = None  # bytes of the body still to come, when its length was given

    @property
    def closed(self) -> bool:
        return self.connection.closed

    def set_close_callback(self, callback: Optional[Callable[[], None]]) -> None:
        self.close_callback = callback

    def read(self) -> None:
        """The request's body has all been read."""
        self.body_follows = False

    def connection_headers(self) -> list[bytes]:
        """Said of the connection: whether it closes after this answer."""
        if self.body_follows:
            self.keep_alive = False  # the body is never read: nothing after it could be
        if self.version == "HTTP/1.1":
            return [] if self.keep_alive else [b"Connection: close"]
        return [b"Connection: Keep-Alive"] if self.keep_alive else []

    def write_answer(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """A whole answer in one write, then finished. Each header line is made once and not searched for CR or
        LF: the server wrote them all itself (a request id comes from a parsed header line, which has none)."""
        lines = [*head(status, reason, headers), *self.connection_headers(), b"", b"" if self.method == "HEAD" else body]
        self.started = True
        self.connection.send(b"\r\n".join(lines))
        self.finish()

    def answer_and_close(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A whole answer that says ``Connection: close``, and the connection closed once it is out: for a
        request whose handler will never answer (its body is late), so nothing else is written for it."""
        closing = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
        lines = [*head(status, tornado.httputil.responses[status], closing), b"", body]
        self.started = self.finished = True
        self.connection.send(b"\r\n".join(lines))
        self.connection.close()

    def write_headers(self, start_line, headers: tornado.httputil.HTTPHeaders,
                      chunk: Optional[bytes] = None) -> "asyncio.Future[None]":
        code = start_line.code
        bodiless = self.method == "HEAD" or code in BODILESS
        self.chunked = (self.version == "HTTP/1.1" and not bodiless and "Content-Length" not in headers
                        and "Transfer-Encoding" not in headers)
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif self.version == "HTTP/1.0" and not bodiless and "Content-Length" not in headers:
            self.keep_alive = False  # the body's end is the connection's
        if bodiless:
            self.remaining = 0
        elif "Content-Length" in headers:
            self.remaining = int(headers["Content-Length"])
        lines = [*head(code, start_line.reason, headers.get_all()), *self.connection_headers()]
        self.started = True
        self.connection.send(b"\r\n".join(lines) + b"\r\n\r\n")
        return self.write(chunk or b"")

    def write(self, chunk: bytes, callback=None) -> "asyncio.Future[None]":
        """Sends ``chunk``; the future resolves once the client has read enough that more may be sent."""
        if chunk:
            if self.remaining is not None:
                self.remaining -= len(chunk)
                if self.remaining < 0:
                    self.connection.close()  # the client could not tell this answer's end from the next one's
                    raise tornado.httputil.HTTPOutputError("Tried to write more data than Content-Length")
            self.connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk)
        return self.connection.outflow.drained(self.closed)

    def finish(self) -> None:
        if self.remaining and not self.closed:
            self.connection.close()  # as above: the client would wait for the rest
            raise tornado.httputil.HTTPOutputError(f"Tried to write {self.remaining} bytes less than Content-Length")
        if self.chunked:
            self.connection.send(b"0\r\n\r\n")
        self.finished = True
        self.connection.turns.answered(self)

    def gone(self) -> None:
        """The client left before the answer was finished: the handler is told, once."""
        callback, self.close_callback = self.close_callback, None
        if callback is not None:
            callback()


class Outflow:
    """Flow control of what a connection sends: a write's future resolves once the client has read enough that
    more may be sent (asyncio's transport says when, through its protocol's ``pause_writing`` and
    ``resume_writing``), and fails once the connection is gone."""

    def __init__(self) -> None:
        self.paused = False
        self.waiters: list[asyncio.Future] = []

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def drained(self, closed: bool) -> "asyncio.Future[None]":
        future = asyncio.get_running_loop().create_future()
        if closed:
            failed(future)
        elif self.paused:
            self.waiters.append(future)
        else:
            future.set_result(None)
        return future

    def end(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                failed(waiter)


def failed(future: asyncio.Future) -> None:
    """As Tornado's writes to a closed connection: failed, and marked as seen, so that a handler that does not
    await it leaves nothing logged."""
    future.set_exception(StreamClosedError())
    future.exception()

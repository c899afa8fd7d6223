"""One client's HTTP/1.1 connection: its bytes parsed by httptools, its requests handed to the application.

Tornado's ``web.Application`` routes and handles each request as it would
behind Tornado's own server; what this replaces is Tornado's ``HTTP1Connection``
and ``IOStream``, which cost about 80 µs of a request's 200 (bench/README.md,
"Below Tornado's handlers"): here a request's bytes are parsed in C, and no
future or coroutine is made per read.

Requests are answered one at a time, in order. One that arrives while the
one before it is answered (pipelined) waits, parsed, and the connection stops
reading until its turn: a client holds at most one read's worth beyond the
request being answered. A body of known length is gathered into one buffer and
handed on whole; a chunked one is handed on as it comes. The application's
handlers bound each body (``--max_buffer_size``, a 413 from the headers or as a
chunked body outgrows it) and its arrival (``handling.BodyDeadlines``); the
server bounds the headers (``parsing.MAX_HEADER_BYTES``) and the wait for them
(``--idle_timeout``, ``httpserver.HTTPServer.sweep``). A client that closes
its side has left: what it asked is not answered.

An answer given before its request's body was read (an error found in the
headers) says ``Connection: close``; the connection then lingers: the server
closes its side once the answer is out, reads and drops what the client still
sends for up to ``LINGER_SECONDS``, then closes. Closing at once with input
unread would reset the connection, which can destroy the answer before the
client has read it.
"""

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

import tornado.httputil
import tornado.iostream

from ..protocol import jsonio
from .answer import Answer, Peer, closed_future, done_future
from .parsing import Incoming, Refusal, RequestParser

if TYPE_CHECKING:
    from .httpserver import HTTPServer

log = logging.getLogger("modelhost")

LINGER_SECONDS = 5.0  # nginx's lingering_timeout


class Connection(asyncio.Protocol):
    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.parser = RequestParser(self)
        self.transport: Any = None
        self.peer = Peer("0.0.0.0", server.scheme)
        self.current: Optional[Incoming] = None  # the request being answered
        self.queued: deque[Incoming] = deque()  # parsed while the current one is answered
        self.closed = False
        self.reading = True
        self.writing_paused = False
        self.drain_waiters: list[asyncio.Future] = []
        self.idle_since: Optional[float] = time.monotonic()  # waiting for a request's headers since then
        self.lingering = False
        self.refusal: Optional[Refusal] = None  # said before closing, once the answers before it are out
        self.linger_end: Optional[asyncio.TimerHandle] = None

    # asyncio's side.

    def connection_made(self, transport) -> None:
        self.transport = transport
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple):  # a Unix socket's peer has no address
            self.peer = Peer(address[0], self.server.scheme)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # dropped: the answer is out and the connection closes
        refusal = self.parser.feed(data)
        if refusal is not None:
            self.refuse_after_answers(refusal)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.current is None:
            self.after_answer()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_exception(tornado.iostream.StreamClosedError())
                waiter.exception()
        self.drain_waiters = []
        if self.linger_end:
            self.linger_end.cancel()
        current, self.current = self.current, None
        self.queued.clear()
        if current is None:
            return
        if not current.complete:
            self.call(current.delegate.on_connection_close)
        elif not current.answer.finished:
            current.answer.gone()

    # The parser's side.

    @property
    def ending(self) -> bool:
        return self.lingering or self.closed

    def headers_parsed(self, incoming: Incoming) -> None:
        self.idle_since = None
        if self.current is None and not self.queued:
            self.begin(incoming)
        else:
            self.queued.append(incoming)
            self.pause_reading()

    def body_parsed(self, incoming: Incoming, chunk: bytes) -> None:
        if incoming.length is None and incoming is self.current and incoming.ready:
            incoming.received += len(chunk)
            self.hand_on(incoming, chunk)
        else:
            incoming.keep(chunk, self.server.max_body_size)

    def message_parsed(self, incoming: Incoming) -> None:
        if incoming is self.current and incoming.ready:
            self.finish_reading(incoming)

    # A request's turn: from its headers to its answer.

    def begin(self, incoming: Incoming) -> None:
        self.current = incoming
        answer = Answer(self, incoming.method, incoming.version, incoming.headers, incoming.keep_alive,
                        incoming.has_body and not incoming.complete)
        incoming.answer = answer
        incoming.delegate = self.server.application.start_request(self, answer)
        start_line = tornado.httputil.RequestStartLine(incoming.method, incoming.url.decode("latin1"), incoming.version)
        prepared = self.call(incoming.delegate.headers_received, start_line, incoming.headers)
        if prepared is not None and not prepared.done():  # a RequestHandler's prepare, which runs on a later turn
            self.pause_reading()
            prepared.add_done_callback(lambda _: self.take_body(incoming))
        else:
            self.take_body(incoming)

    def take_body(self, incoming: Incoming) -> None:
        """The request's handler is ready for its body: what has come is handed on, the rest as it comes."""
        incoming.ready = True
        answer = incoming.answer
        if incoming is not self.current or answer.started or self.closed:
            return  # answered from its headers: its body is not read
        if incoming.length is not None and incoming.length > self.server.max_body_size:
            self.refuse_body(incoming)
            return
        if answer.body_follows and not incoming.received and incoming.headers.get("Expect") == "100-continue":
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks, incoming.chunks = incoming.chunks, []
        for chunk in chunks:
            self.hand_on(incoming, chunk)
        if incoming.complete:
            self.finish_reading(incoming)
        elif not self.queued:
            self.resume_reading()

    def hand_on(self, incoming: Incoming, chunk: bytes) -> None:
        if not incoming.answer.started:
            incoming.handed_on += len(chunk)
            self.call(incoming.delegate.data_received, chunk)
            if incoming.handed_on > self.server.max_body_size and not incoming.answer.started:
                self.refuse_body(incoming)  # a handler that does not count its chunked body

    def finish_reading(self, incoming: Incoming) -> None:
        answer = incoming.answer
        if answer.started:
            return  # answered while the body came: the connection closes
        answer.read()
        if incoming.body is not None:
            self.call(incoming.delegate.data_received, incoming.body)
            incoming.body = None
        if not answer.finished:
            self.call(incoming.delegate.finish)

    def answered(self, answer: Answer) -> None:
        """``answer`` is written whole: the connection closes (lingering, if its request's body is unread), or
        serves the next request."""
        current = self.current
        if current is None or current.answer is not answer:
            return
        if answer.body_follows:
            self.linger()
        elif not answer.keep_alive:
            self.close()
        else:
            self.current = None
            self.after_answer()

    def after_answer(self) -> None:
        if self.closed or self.writing_paused:
            return  # the next request waits until the client reads this answer
        if self.queued:
            # On a later turn, as Tornado does: the next request waits behind other clients.
            asyncio.get_running_loop().call_soon(self.next_request)
        elif self.refusal is not None:
            self.close()
        else:
            self.idle_since = time.monotonic()
            self.resume_reading()

    def next_request(self) -> None:
        if self.current is None and self.queued and not self.closed:
            self.begin(self.queued.popleft())

    # Writing, and the connection's end.

    def send(self, data: bytes) -> None:
        if not self.closed and not self.lingering:
            self.transport.write(data)

    def drained(self) -> "asyncio.Future[None]":
        """Resolved once the client has read enough of what was sent that more may be."""
        if self.closed:
            return closed_future()
        if not self.writing_paused:
            return done_future()
        waiter = asyncio.get_running_loop().create_future()
        self.drain_waiters.append(waiter)
        return waiter

    def refuse_body(self, incoming: Incoming) -> None:
        """The server's own 413, for a handler that let a body too large through."""
        message = f"the request body is larger than max_buffer_size ({self.server.max_body_size} bytes)"
        body = jsonio.dumps({"error": message})
        incoming.answer.write_answer(413, tornado.httputil.responses[413], [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)

    def refuse_after_answers(self, refusal: Refusal) -> None:
        """The client's bytes are not a request this server reads: nothing more is read; the requests before
        them are answered, then ``refusal`` is, and the connection closes."""
        self.refusal = refusal
        self.pause_reading()
        if refusal.status:
            log.info("refused from %s: %d %s", self.peer, refusal.status, refusal.message)
        if self.current is None and not self.queued or self.current is not None and not self.current.complete:
            self.close()

    def linger(self) -> None:
        self.lingering = True
        self.current = None
        self.queued.clear()
        if not self.transport.can_write_eof():  # TLS cannot close one side alone
            self.close()
            return
        self.transport.write_eof()  # once what is queued is sent
        self.linger_end = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.close)
        self.resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        refusal = self.refusal
        if refusal and refusal.status and (self.current is None or not self.current.answer.started):
            body = jsonio.dumps({"error": refusal.message})
            self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n%s" % (refusal.status,
                                                                   tornado.httputil.responses[refusal.status].encode(),
                                                                   len(body), body))
        self.closed = True
        self.transport.close()  # once what is queued is sent

    def pause_reading(self) -> None:
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and not self.closed and self.refusal is None:
            self.reading = True
            self.transport.resume_reading()

    def call(self, method, *args) -> Any:
        """A handler's method: what escapes it is the server's fault, logged, and the connection closed."""
        try:
            return method(*args)
        except Exception:
            log.error("Uncaught exception", exc_info=True)
            self.close()
            return None

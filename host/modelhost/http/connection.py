"""One client's HTTP/1.1 connection: its bytes parsed by httptools, its requests handed to the application.

Tornado's ``web.Application`` routes and handles each request as it would
behind Tornado's own server; what this replaces is Tornado's ``HTTP1Connection``
and ``IOStream``, which cost about 80 µs of a request's 200 (bench/README.md,
"Below Tornado's handlers"): here a request's bytes are parsed in C, and no
future or coroutine is made per read.

Requests are answered one at a time, in order (``turns.Turns``): one that
arrives while the one before it is answered (pipelined) waits, parsed; past
``MAX_QUEUED`` of them the rest of what was read waits unparsed, and the
connection stops reading until their turn. The application's handlers bound
each body (``--max_buffer_size``, a 413 from the headers or as a chunked body
outgrows it) and its arrival (``handling.BodyDeadlines``); the
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
from typing import TYPE_CHECKING, Any, Optional

from .answer import Outflow, Peer
from .parsing import Refusal, RequestParser
from .turns import Turns

if TYPE_CHECKING:
    from .httpserver import HTTPServer

log = logging.getLogger("modelhost")

LINGER_SECONDS = 5.0  # nginx's lingering_timeout
# Pipelined requests held parsed while one is answered; the bytes after them wait unparsed, and nothing more is
# read. Parsed a piece at a time (a body of known length in one), a read of many small requests never becomes
# thousands of parsed ones.
MAX_QUEUED = 8
PIECE_BYTES = 4096


class Connection(asyncio.Protocol):
    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.turns = Turns(self)
        self.parser = RequestParser(self.turns)
        self.transport: Any = None
        self.peer = Peer("0.0.0.0", server.scheme)
        self.closed = False
        self.reading = True
        self.outflow = Outflow()
        self.idle_since: Optional[float] = time.monotonic()  # waiting for a request's headers since then
        self.lingering = False
        self.linger_end: Optional[asyncio.TimerHandle] = None
        self.refusal: Optional[Refusal] = None  # said before closing, once the answers before it are out
        self.unparsed: bytes | memoryview = b""  # read, not yet parsed: behind MAX_QUEUED requests

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
        if not self.unparsed and len(data) <= PIECE_BYTES and len(self.turns.queued) < MAX_QUEUED:
            self.feed(data)  # the common case: one piece
            return
        self.unparsed = bytes(self.unparsed) + data if self.unparsed else data
        self.parse()

    def parse(self) -> None:
        """Parses what has been read, a piece at a time, while fewer than MAX_QUEUED requests wait their turn."""
        view, start = memoryview(self.unparsed), 0
        while start < len(view) and len(self.turns.queued) < MAX_QUEUED and self.refusal is None and not self.ending:
            incoming = self.parser.incoming
            size = PIECE_BYTES if not incoming.length else max(PIECE_BYTES, incoming.length - incoming.received)
            self.feed(view[start:start + size])
            start += size
        self.unparsed = view[start:] if start < len(view) and not self.ending else b""
        if self.unparsed:
            self.pause_reading()

    def feed(self, data: bytes | memoryview) -> None:
        refusal = self.parser.feed(data)
        if refusal is not None:
            self.refuse_after_answers(refusal)

    def pause_writing(self) -> None:
        self.outflow.pause()

    def resume_writing(self) -> None:
        self.outflow.resume()
        if self.turns.current is None:
            self.ready_for_next()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.outflow.end()
        if self.linger_end:
            self.linger_end.cancel()
        self.turns.lost()

    @property
    def ending(self) -> bool:
        """Nothing more is parsed: the connection lingers or has closed."""
        return self.lingering or self.closed

    # Between answers.

    def ready_for_next(self) -> None:
        """An answer is out: the next request's turn, the refusal that waited for it, or an idle wait."""
        if self.closed or self.outflow.paused:
            return  # the next request waits until the client reads this answer
        if self.turns.queued:
            # On a later turn, as Tornado does: the next request waits behind other clients.
            asyncio.get_running_loop().call_soon(self.turns.next_request)
        elif self.refusal is not None:
            self.end_with(self.refusal)
        else:
            self.idle_since = time.monotonic()
            self.resume_reading()

    def refuse_after_answers(self, refusal: Refusal) -> None:
        """The client's bytes are not a request this server reads: nothing more is read; the requests before
        them are answered, then ``refusal`` is, and the connection closes."""
        current = self.turns.current
        if current is None and not self.turns.queued or current is not None and not current.complete:
            self.end_with(refusal)
            return
        self.refusal = refusal
        self.pause_reading()

    def end_with(self, refusal: Refusal) -> None:
        """Closes the connection at once, saying ``refusal`` unless an answer is under way."""
        if refusal.status and refusal.status < 500:
            log.info("refused from %s: %d %s", self.peer, refusal.status, refusal.message)
        self.refusal = refusal
        self.close()

    # Writing, and the connection's end.

    def send(self, data: bytes) -> None:
        if not self.closed and not self.lingering:
            self.transport.write(data)

    def linger(self) -> None:
        self.lingering = True
        self.turns.lost()
        if not self.transport.can_write_eof():  # TLS cannot close one side alone
            self.close()
            return
        self.transport.write_eof()  # once what is queued is sent
        self.linger_end = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.close)
        self.resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        refusal, current = self.refusal, self.turns.current
        if refusal and refusal.status and (current is None or not current.answer.started):
            self.transport.write(refusal.answer())
        self.closed = True
        self.transport.close()  # once what is queued is sent

    def pause_reading(self) -> None:
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and not self.closed and self.refusal is None and not self.unparsed:
            self.reading = True
            self.transport.resume_reading()

"""A connection's requests, answered one at a time in the order they came.

The parser tells ``Turns`` of each request's headers, body and end. The
request whose turn it is gets its ``Answer`` and its Tornado delegate (the
application's route for it); one parsed while another is answered (pipelined)
waits in ``queued``, and its connection stops reading until its turn. A body
of known length is handed on whole once it has all come; a chunked one as it
comes, once the handler is ready for it (a RequestHandler is after its
``prepare``, on a later turn of the loop).
"""

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

import tornado.httputil

from .answer import Answer
from .handling import error_body, too_large
from .parsing import Incoming, Refusal

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("modelhost")


class Turns:
    def __init__(self, connection: "Connection"):
        self.connection = connection
        self.max_body_size = connection.server.max_body_size
        self.current: Optional[Incoming] = None  # the request being answered
        self.queued: deque[Incoming] = deque()  # parsed while the current one is answered

    @property
    def ending(self) -> bool:
        """The parser reads no further: the connection lingers or has closed."""
        return self.connection.ending

    # The parser's side.

    def headers_parsed(self, incoming: Incoming) -> None:
        self.connection.idle_since = None
        if self.current is None and not self.queued:
            self.begin(incoming)
        else:
            self.queued.append(incoming)
            self.connection.pause_reading()

    def body_parsed(self, incoming: Incoming, chunk: bytes) -> None:
        if incoming.length is None and incoming is self.current and incoming.ready:
            incoming.received += len(chunk)
            self.hand_on(incoming, chunk)
        else:
            incoming.keep(chunk, self.max_body_size)

    def message_parsed(self, incoming: Incoming) -> None:
        if incoming is self.current and incoming.ready:
            self.finish_reading(incoming)

    # A request's turn: from its headers to its answer.

    def begin(self, incoming: Incoming) -> None:
        self.current = incoming
        connection = self.connection
        answer = Answer(connection, incoming.method, incoming.version, incoming.keep_alive,
                        incoming.has_body and not incoming.complete)
        incoming.answer = answer
        incoming.delegate = connection.server.application.start_request(connection, answer)
        start_line = tornado.httputil.RequestStartLine(incoming.method, incoming.url.decode("latin1"), incoming.version)
        prepared = self.call(incoming, "headers_received", start_line, incoming.headers)
        if incoming.delegate is None:
            return  # it refused the request
        if prepared is not None and not prepared.done():  # a RequestHandler's prepare, which runs on a later turn
            connection.pause_reading()
            prepared.add_done_callback(lambda _: self.take_body(incoming))
        else:
            self.take_body(incoming)

    def take_body(self, incoming: Incoming) -> None:
        """The request's handler is ready for its body: what has come is handed on, the rest as it comes."""
        incoming.ready = True
        answer = incoming.answer
        if incoming is not self.current or answer.started or incoming.delegate is None or self.connection.closed:
            return  # answered from its headers (or refused): its body is not read
        if incoming.length is not None and incoming.length > self.max_body_size:
            self.refuse_body(incoming)
            return
        if answer.body_follows and not incoming.received and incoming.headers.get("Expect") == "100-continue":
            self.connection.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks, incoming.chunks = incoming.chunks, []
        for chunk in chunks:
            self.hand_on(incoming, chunk)
        if incoming.complete:
            self.finish_reading(incoming)
        elif not self.queued:
            self.connection.resume_reading()

    def hand_on(self, incoming: Incoming, chunk: bytes) -> None:
        if not incoming.answer.started:
            incoming.handed_on += len(chunk)
            self.call(incoming, "data_received", chunk)
            if incoming.handed_on > self.max_body_size and not incoming.answer.started:
                self.refuse_body(incoming)  # a handler that does not count its chunked body

    def finish_reading(self, incoming: Incoming) -> None:
        answer = incoming.answer
        if answer.started or incoming.delegate is None:
            return  # answered while the body came, or refused: the connection closes
        answer.read()
        if incoming.body is not None:
            self.call(incoming, "data_received", incoming.body)
            incoming.body = None
        if not answer.finished:
            self.call(incoming, "finish")

    def answered(self, answer: Answer) -> None:
        """``answer`` is written whole: the connection closes (lingering, if its request's body is unread), or
        serves the next request."""
        current = self.current
        if current is None or current.answer is not answer:
            return
        if answer.body_follows:
            self.connection.linger()
        elif not answer.keep_alive:
            self.connection.close()
        else:
            self.current = None
            self.connection.ready_for_next()

    def next_request(self) -> None:
        if self.current is None and self.queued and not self.connection.closed:
            self.begin(self.queued.popleft())
            if self.connection.unparsed:
                self.connection.parse()  # one more may be parsed and wait

    def refuse_body(self, incoming: Incoming) -> None:
        """The server's own 413, for a handler that let a body too large through."""
        refusal = too_large(self.max_body_size)
        body = error_body(refusal.message)
        incoming.answer.write_answer(refusal.status, tornado.httputil.responses[refusal.status], [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)

    def lost(self) -> None:
        """The connection is gone: the request under way is told, as Tornado tells it."""
        current, self.current = self.current, None
        self.queued.clear()
        if current is None:
            return
        if not current.complete:
            self.call(current, "on_connection_close")
        elif not current.answer.finished:
            current.answer.gone()

    def call(self, incoming: Incoming, method: str, *args) -> Any:
        """A method of the request's delegate (Tornado's route for it). What escapes it ends the request and its
        connection: a request that Tornado will not take (``HTTPInputError``: an HTTP/1.1 request without a
        Host, say) with 400, anything else, the server's fault, with 500 and a traceback in the log. The
        delegate is told nothing more."""
        if incoming.delegate is None:
            return None
        try:
            return getattr(incoming.delegate, method)(*args)
        except tornado.httputil.HTTPInputError as error:
            refusal = Refusal(400, f"malformed HTTP request: {error}")
        except Exception:
            log.error("Uncaught exception", exc_info=True)
            refusal = Refusal(500, "Internal Server Error")
        incoming.delegate = None
        self.connection.end_with(refusal)
        return None

"""A connection's bytes as requests: httptools' parser (llhttp, Node's, as uvicorn uses it), in C.

``RequestParser`` makes an ``Incoming`` of each request's line and headers
and tells its connection's ``turns.Turns`` as the headers, each piece of body
and the end arrive. It bounds the request line and headers (``MAX_HEADER_BYTES``),
and says what is refused when the bytes are not a request this server reads.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import httptools
import tornado.httputil

from ..protocol import jsonio
from .answer import head

if TYPE_CHECKING:
    from .answer import Answer
    from .turns import Turns

MAX_HEADER_BYTES = 65536  # the request line and headers together, as Tornado's max_header_size


@dataclass(frozen=True)
class Refusal:
    """What the server says before it closes a connection whose bytes it will not read on; status 0 says
    nothing (a request to switch protocols, answered as HTTP/1.1, then closed)."""

    status: int
    message: str

    def answer(self) -> bytes:
        body = jsonio.dumps({"error": self.message})
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")]
        return b"\r\n".join([*head(self.status, tornado.httputil.responses[self.status], headers), b"", body])


NOT_SWITCHING = Refusal(0, "")


class Incoming:
    """A request as its bytes are parsed. Until its handler takes its body, the body is kept here: one of known
    length in one buffer, which is handed on whole; a chunked one in its pieces."""

    __slots__ = ("url", "headers", "method", "version", "keep_alive", "length", "body", "chunks", "received",
                 "handed_on", "complete", "answer", "delegate", "ready")

    answer: "Answer"  # from its turn on
    delegate: Any  # Tornado's HTTPMessageDelegate for it, from its turn on

    def __init__(self) -> None:
        self.url = b""
        self.headers = tornado.httputil.HTTPHeaders()
        self.method = "GET"
        self.version = "HTTP/1.1"
        self.keep_alive = True
        self.length: Optional[int] = None  # Content-Length; None for a chunked body
        self.body: Optional[bytearray] = None
        self.chunks: list[bytes] = []
        self.received = 0
        self.handed_on = 0  # of a chunked body, the bytes its handler has had
        self.complete = False  # parsed to its end
        self.ready = False  # its handler takes its body (a RequestHandler does once its prepare has run)

    @property
    def has_body(self) -> bool:
        return bool(self.length) or "Transfer-Encoding" in self.headers

    def keep(self, chunk: bytes, max_body_size: int) -> None:
        start = self.received
        self.received += len(chunk)
        if self.length is None:
            self.chunks.append(chunk)
        elif self.length <= max_body_size:  # a larger one is refused when its turn comes, and not kept
            if self.body is None:
                self.body = bytearray(self.length)
            self.body[start:self.received] = chunk


BETWEEN_REQUESTS = Incoming()  # never parsed into: each request's bytes begin with a new one


class HeadersTooLarge(Exception):
    pass


class StopParsing(Exception):
    """Raised in a callback once the connection lingers or closes: what follows is not read."""


class RequestParser:
    def __init__(self, turns: "Turns"):
        self.turns = turns
        self.parser = httptools.HttpRequestParser(self)
        # The request being parsed; between requests, none: the last one's handler, and what its request holds
        # (a tensor viewing a shared-memory region), must not outlive its answer here.
        self.incoming = BETWEEN_REQUESTS
        self.header_bytes = 0

    def feed(self, data: bytes | memoryview) -> Optional[Refusal]:
        """Parses ``data``; what is refused, when it is not a request this server reads on."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return NOT_SWITCHING
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, StopParsing):
                return None
            if isinstance(error.__context__, HeadersTooLarge):
                return Refusal(431, f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes")
            raise
        except httptools.HttpParserError as error:
            return Refusal(400, f"malformed HTTP request: {error}")
        return None

    # httptools' callbacks, in the order they come for each request.

    def on_message_begin(self) -> None:
        self.stop_if_ending()
        self.incoming = Incoming()
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.count_header_bytes(len(url))
        self.incoming.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count_header_bytes(len(name) + len(value) + 4)
        self.incoming.headers.add(name.decode("latin1"), value.decode("latin1"))

    def on_headers_complete(self) -> None:
        incoming, parser = self.incoming, self.parser
        incoming.method = parser.get_method().decode("latin1")
        incoming.version = "HTTP/" + parser.get_http_version()
        incoming.keep_alive = parser.should_keep_alive()
        length = incoming.headers.get("Content-Length")
        incoming.length = None if length is None else int(length)  # httptools has checked that it is one number
        self.turns.headers_parsed(incoming)

    def on_body(self, body: bytes) -> None:
        self.stop_if_ending()
        self.turns.body_parsed(self.incoming, body)

    def on_message_complete(self) -> None:
        incoming, self.incoming = self.incoming, BETWEEN_REQUESTS
        incoming.complete = True
        self.turns.message_parsed(incoming)

    def stop_if_ending(self) -> None:
        if self.turns.ending:
            raise StopParsing()

    def count_header_bytes(self, count: int) -> None:
        self.header_bytes += count
        if self.header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLarge()

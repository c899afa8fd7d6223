"""Tornado's HTTP server, with changes to how its connections read and write.

Three take out per-request work that showed in profiles (bench/README.md):
Nagle's algorithm toggled twice a request, a large body copied three times on
its way in, and an answer's headers built twice over on their way out. The
others are about answers given before a body is read (an error found in the
headers): such an answer says ``Connection: close`` and the body is never
read, while an answer to a request that has no body keeps the connection, as
any other does. Tornado builds its connection objects itself, so the request
loop that makes them is restated here, naming another class;
tests/test_tornado_guard.py fails when the Tornado code it builds on changes.
"""

import asyncio
import socket
import sys

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
from tornado.iostream import StreamClosedError, UnsatisfiableReadError
from tornado.log import gen_log

LINGER_SECONDS = 5.0  # nginx's lingering_timeout


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's, with Nagle's algorithm off once per connection, and bodies read whole.

    Tornado turns ``TCP_NODELAY`` on as each response finishes and off again once
    it is sent: two system calls a request. Every answer here leaves in one
    write, which Nagle's algorithm would only delay, so it stays off.
    """

    def handle_stream(self, stream, address):
        stream.set_nodelay(True)
        stream.set_nodelay = lambda value: None
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        connection = ServerConnection(stream, self.conn_params, context)
        self._connections.add(connection)
        connection.start_serving(self)


class ServerConnection(tornado.http1connection.HTTP1ServerConnection):
    """One client's connection: its requests one after the other, as Tornado reads them, each body whole."""

    async def _server_request_loop(self, delegate) -> None:
        try:
            while True:
                connection = WholeBodyConnection(self.stream, False, self.params, self.context)
                handler = delegate.start_request(self, connection)
                try:
                    keep_alive = await connection.read_response(handler)
                except (StreamClosedError, UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    connection.close()
                    return
                if connection.lingering:
                    await connection.discard_input()
                    return
                if not keep_alive:
                    return
                await asyncio.sleep(0)  # as Tornado does: the next request waits its turn behind other clients
        finally:
            delegate.on_close(self)


class WholeBodyConnection(tornado.http1connection.HTTP1Connection):
    """One request on a connection: its body of known length read straight into one buffer.

    Tornado reads a body in 64 KB pieces, each into a new buffer that it copies
    twice before the handler sees it, and the handler then joins the pieces.
    Here the kernel's copy into the buffer is the only one, and the handler
    gets the whole body at once (a V2 tensor is then a view of it). The
    buffer is set aside before the body arrives: ``--max_buffer_size`` (checked
    by the handler before this runs) and the body deadline bound what it holds.

    A handler that answers before the body is read (an error found in the
    headers, or a chunked body that outgrew the limit) leaves the body unread.
    Tornado then closes the connection after the answer without saying so,
    even when there is no body at all, and reads on to check the body's length
    against its own limit, logging a second, bare 400 as malformed input. Here
    such an answer keeps the connection when no body follows; when one does,
    it says ``Connection: close``, and the connection lingers: the server
    closes its side once the answer is out, then reads and drops what the client
    still sends for up to ``LINGER_SECONDS``. Closing at once with input unread
    would reset the connection, which can destroy the answer before the client
    has read it.
    """

    lingering = False  # answered before its body: it closes once the client has had time to read the answer

    def write_headers(self, start_line, headers, chunk=None):
        self.answering()
        return super().write_headers(start_line, headers, chunk)

    def answering(self) -> None:
        if not self.is_client and not self._read_finished:
            assert self._request_headers is not None  # a server answers a request it has read the headers of
            if has_body(self._request_headers):
                self._disconnect_on_finish = True  # "Connection: close" is said for it
            else:
                self._read_finished = True  # nothing left to read: the connection serves the next request

    def write_answer(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """A whole answer, headers and body in one write, then finished: ``write_headers`` and ``finish``.

        For an answer whose headers the server wrote itself, each line is made
        once, with no HTTPHeaders built and no line searched for CR or LF: none
        can hold them (a request id comes from a parsed header line). That is
        three microseconds of every inference answer. A HEAD gets no body.
        """
        self.answering()
        request_line, request_headers = self._request_start_line, self._request_headers
        assert request_line is not None and request_headers is not None
        lines = [b"HTTP/1.1 %d %s" % (status, reason.encode("latin1"))]
        lines += [f"{name}: {value}".encode("latin1") for name, value in headers]
        if request_line.version == "HTTP/1.1" and self._disconnect_on_finish:
            lines.append(b"Connection: close")
        elif request_line.version == "HTTP/1.0" and request_headers.get("Connection", "").lower() == "keep-alive":
            lines.append(b"Connection: Keep-Alive")
        self._response_start_line = tornado.httputil.ResponseStartLine("HTTP/1.1", status, reason)
        self._chunking_output = False
        self._expected_content_remaining = 0  # the body goes with the headers
        if not self.stream.closed():
            lines.append(b"")
            lines.append(b"" if request_line.method == "HEAD" else body)
            self._pending_write = self.stream.write(b"\r\n".join(lines))
            self._pending_write.add_done_callback(self._on_write_complete)
        self.finish()

    def _finish_request(self, future) -> None:
        if self.is_client or self._read_finished or not self._disconnect_on_finish:
            super()._finish_request(future)
            return
        self.lingering = True
        self._clear_callbacks()
        if self.stream.socket is not None:
            try:
                self.stream.socket.shutdown(socket.SHUT_WR)
            except OSError:  # the client is gone already
                pass
        self.stream.io_loop.call_later(LINGER_SECONDS, self.close)
        self._finish_future.set_result(None)

    async def discard_input(self) -> None:
        """Read and drop what comes until the connection closes: the client's, or ours after LINGER_SECONDS."""
        try:
            while True:
                await self.stream.read_bytes(65536, partial=True)
        except StreamClosedError:
            pass

    def _read_body(self, code, headers, delegate):
        if self._write_finished:  # answered from its headers: not read, but dropped as the connection lingers
            return None
        return super()._read_body(code, headers, delegate)

    async def _read_chunked_body(self, delegate) -> None:
        # The handler counts a chunked body's bytes and answers 413 past --max_buffer_size; Tornado's own limit
        # would answer a bare 400 first, when one chunk declares more. It hands on what it reads in 64 KB pieces.
        self._max_body_size = sys.maxsize
        await super()._read_chunked_body(delegate)

    async def _read_fixed_body(self, content_length: int, delegate) -> None:
        body = bytearray(content_length)
        await self.stream.read_into(body)
        if self._write_finished:  # answered while it arrived: the server is stopping
            return
        streaming = delegate.data_received(body)
        if streaming is not None:
            await streaming


def has_body(headers: tornado.httputil.HTTPHeaders) -> bool:
    return headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in headers


def answer_and_close(connection: tornado.http1connection.HTTP1Connection, status: int,
                     headers: list[tuple[str, str]], body: bytes) -> None:
    """A whole answer that says ``Connection: close``, then the connection closed once it is out: for a request
    whose handler will never answer (its body is late), so nothing is written on the connection but this.

    Never raises: a client already gone just has its connection closed.
    """
    lines = [b"HTTP/1.1 %d %s" % (status, tornado.httputil.responses[status].encode("latin1"))]
    lines += [f"{name}: {value}".encode("latin1") for name, value in headers]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", body]
    try:
        written = connection.stream.write(b"\r\n".join(lines))
    except StreamClosedError:
        connection.close()
        return
    # Closed only once the answer is out: Tornado drops what is still queued when it closes. Its read of the body
    # has kept the socket drained, so the close sends a FIN after the answer rather than a reset that could lose it.
    written.add_done_callback(lambda _: connection.close())

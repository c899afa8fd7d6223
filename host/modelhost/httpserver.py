"""Tornado's HTTP server, with two changes to how its connections read and write.

Both take out per-request work that showed in profiles (bench/README.md):
Nagle's algorithm toggled twice a request, and a large body copied three
times on its way in. Tornado builds its connection objects itself, so the
request loop that makes them is restated here, naming another class.
"""

import asyncio

import tornado.http1connection
import tornado.httpserver
from tornado.iostream import StreamClosedError, UnsatisfiableReadError
from tornado.log import gen_log


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
                if not keep_alive:
                    return
                await asyncio.sleep(0)  # as Tornado does: the next request waits its turn behind other clients
        finally:
            delegate.on_close(self)


class WholeBodyConnection(tornado.http1connection.HTTP1Connection):
    """Reads a body of known length from the socket straight into one buffer.

    Tornado reads it in 64 KB pieces, each into a new buffer that it copies
    twice before the handler sees it, and the handler then joins the pieces.
    Here the kernel's copy into the buffer is the only one, and the handler
    gets the whole body at once (a V2 tensor is then a view of it). The
    buffer is set aside before the body arrives: ``--max_buffer_size`` (checked
    by Tornado before this runs) and the body deadline bound what it holds.
    """

    async def _read_fixed_body(self, content_length: int, delegate) -> None:
        if self._write_finished:  # refused before its body came: drained in Tornado's pieces, never held
            await super()._read_fixed_body(content_length, delegate)
            return
        body = bytearray(content_length)
        await self.stream.read_into(body)
        if self._write_finished:  # answered while it arrived: the server is stopping
            return
        streaming = delegate.data_received(body)
        if streaming is not None:
            await streaming

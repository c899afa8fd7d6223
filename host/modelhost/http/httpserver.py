"""The HTTP/1.1 server: the listening sockets, their connections (``connection.Connection``), and the idle ones
closed.

``serve_until`` makes one per serving process, over sockets bound before
any fork (``SO_REUSEPORT`` when there are several processes); ``stop`` ends
listening, and ``close_all_connections`` closes what is left once the
requests in flight are answered.
"""

import asyncio
import ssl
import time
from typing import Optional

import tornado.web

from .connection import Connection

SWEEP_SECONDS = 1.0  # how often idle connections are looked for: --idle_timeout is kept to within this


class HTTPServer:
    def __init__(self, application: tornado.web.Application, max_body_size: int, idle_timeout: float = 3600.0,
                 ssl_context: Optional[ssl.SSLContext] = None):
        self.application = application
        self.max_body_size = max_body_size  # a body larger than this is refused, when its handler has not
        self.idle_timeout = idle_timeout  # how long a connection may wait for a request's headers
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        self.connections: set[Connection] = set()
        self.listeners: list[asyncio.AbstractServer] = []
        self.sweeping: Optional[asyncio.TimerHandle] = None

    async def listen(self, sockets) -> None:
        loop = asyncio.get_running_loop()
        # A TLS handshake is a wait for a request's headers too: it gets no longer than idle_timeout.
        handshake_timeout = self.idle_timeout if self.ssl_context else None
        for sock in sockets:
            self.listeners.append(await loop.create_server(lambda: Connection(self), sock=sock, ssl=self.ssl_context,
                                                           ssl_handshake_timeout=handshake_timeout))
        self.sweeping = loop.call_later(SWEEP_SECONDS, self.sweep)

    def sweep(self) -> None:
        """Closes the connections that have waited longer than ``idle_timeout`` for a request's headers (a
        client that reads its answer slowly is not idle: ``Connection.idle_since`` starts once it is read)."""
        oldest = time.monotonic() - self.idle_timeout
        for connection in list(self.connections):
            if connection.idle_since is not None and connection.idle_since < oldest and not connection.outflow.paused:
                connection.close()
        self.sweeping = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self.sweep)

    def stop(self) -> None:
        """No more connections are accepted; those open serve on."""
        for listener in self.listeners:
            listener.close()
        if self.sweeping:
            self.sweeping.cancel()

    async def close_all_connections(self) -> None:
        for connection in list(self.connections):
            connection.close()
        await asyncio.sleep(0)  # their connection_lost, which tells a handler still waiting

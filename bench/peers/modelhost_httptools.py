"""modelhost serve with its own Tornado application on bare_httptools.py's ``Connection``: a measurement.

    python bench/peers/modelhost_httptools.py serve [modelhost serve's flags]

``bare_httptools.py`` measures Tornado's HTTP/1.1 layer under the bare handler; this measures it under
modelhost's own routes and exchanges, served as ``modelhost serve`` serves them (its event loop, uvloop by
default) but with its ``HTTPServer`` (Tornado's ``HTTP1Connection`` and ``IOStream``) swapped for httptools'
parser, so that the gain of such a front end is known before it is built. It leaves out what bare_httptools.py
does, and what a server must keep (bench/README.md, "Below Tornado's handlers"): it is not a server to run.
"""

import asyncio
import sys
from pathlib import Path

import modelhost.server
from modelhost import cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_httptools import Connection  # noqa: E402


class HTTPServer:
    """What modelhost's server asks of its HTTP server, on httptools."""

    def __init__(self, application, **settings):
        self.application = application

    def add_sockets(self, sockets) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            loop.create_task(loop.create_server(lambda: Connection(self.application), sock=sock))

    def stop(self) -> None:
        pass

    async def close_all_connections(self) -> None:
        pass


if __name__ == "__main__":
    modelhost.server.HTTPServer = HTTPServer
    sys.exit(cli.main(sys.argv[1:]))

"""The server's TLS certificate and key (``--ssl_certfile``, ``--ssl_keyfile``): HTTPS, and TLS for gRPC.

A certificate replaced on disk (as cert-manager renews one) is read again,
without a restart, as KServe 0.21 does: HTTPS's SSLContext loads the new pair
in place, and gRPC's credentials hand it to the next handshake. Connections
already open keep the certificate they began with.
"""

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from watchfiles import awatch

from .errors import CannotServe

log = logging.getLogger("modelhost")


@dataclass(frozen=True)
class TLSFiles:
    certfile: Path
    keyfile: Path


class Certificates:
    """One serving process's view of the pair: made after any fork, watched on its event loop."""

    def __init__(self, files: TLSFiles):
        self.files = files
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.pair = self.read()
        self.load(self.context)
        self.handed_to_grpc: Optional[tuple[bytes, bytes]] = None

    def read(self) -> tuple[bytes, bytes]:
        try:
            return self.files.keyfile.read_bytes(), self.files.certfile.read_bytes()
        except OSError as error:
            raise CannotServe(f"cannot read the TLS certificate or key: {error.filename}: {error.strerror}") from None

    def load(self, context: ssl.SSLContext) -> None:
        try:
            context.load_cert_chain(self.files.certfile, self.files.keyfile)
        except (ssl.SSLError, OSError) as error:
            raise CannotServe(f"cannot use the TLS certificate {self.files.certfile} with the key "
                              f"{self.files.keyfile}: {error}") from None

    def grpc_credentials(self):
        """Credentials whose every handshake takes the pair as it is now."""
        import grpc  # the serving process's, after any fork

        def fetch():
            if self.pair == self.handed_to_grpc:
                return None  # unchanged: gRPC keeps what it has
            self.handed_to_grpc = self.pair
            return grpc.ssl_server_certificate_configuration([self.pair])

        self.handed_to_grpc = self.pair
        return grpc.dynamic_ssl_server_credentials(grpc.ssl_server_certificate_configuration([self.pair]), fetch)

    async def watch(self, stopping: asyncio.Event) -> None:
        """Read the pair again whenever either file changes, until ``stopping``; a broken pair is logged, and
        the one before it serves on."""
        paths = (self.files.certfile, self.files.keyfile)
        async for _ in awatch(*paths, stop_event=stopping):
            try:
                pair = self.read()
                # Tried on a context of its own first: a pair that fails half-way must not touch the live one.
                self.load(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
                self.load(self.context)
            except CannotServe as error:
                log.error("%s; the certificate before it serves on", error)
                continue
            self.pair = pair
            log.info("TLS certificate %s read again", self.files.certfile)

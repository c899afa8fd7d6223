"""What one gRPC client may hold of a serving process, and for how long: streams, connections, unread bytes.

gRPC's own defaults bound only the size of a message. A client could open
streams without end, on connections without end, each holding a message that
never completes (all of it buffered: gRPC opens a stream's window to fit the
length a message announces), or a connection that never sends its preface,
for as long as it liked. These bounds do for gRPC what ``--idle_timeout`` and
``--body_timeout`` do for HTTP; what each core argument does was measured
against grpcio 1.85 with a raw HTTP/2 client (tests/test_grpc_bounds.py).

Imported before any fork (by the command line and ``ServerConfig``): nothing of gRPC here.
"""

import argparse
import resource
from dataclasses import dataclass, field
from typing import Callable

from ..settings import COUNT, Bounded

# What a stream may hold beyond the message being read (bytes sent past it, while the call runs or its answer
# waits on the client). With gRPC's default window probing (BDP) that grew to 128 MiB a stream; probing adds
# nothing to requests, whose window opens to each message's announced length whatever this is.
STREAM_WINDOW_BYTES = 64 * 1024
INT_MAX = 2**31 - 1  # gRPC's int arguments; for a duration, no limit


def default_max_connections() -> int:
    """1000, or half the process's open-file limit when that is lower: HTTP, the workers' sockets and the plugins
    need descriptors too, and a process out of them fails everything."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1000 if soft == resource.RLIM_INFINITY else max(1, min(1000, soft // 2))


@dataclass(frozen=True)
class GRPCBounds:
    """The bounds of one serving process's gRPC server; durations in seconds.

    An unfinished message holds at most ``max_connections`` x ``max_concurrent_streams`` x the largest message,
    for at most ``message_timeout``; anything else a connection holds, for at most ``max_connection_age`` plus
    ``max_connection_age_grace``.
    """

    max_concurrent_streams: int = 100  # per connection; more are refused (RST_STREAM REFUSED_STREAM)
    max_connections: int = field(default_factory=default_max_connections)  # more are closed as they are accepted
    # --idle_timeout: a connection with no call open, or one that has not finished its handshake (TLS, the
    # HTTP/2 preface and SETTINGS), is closed after this long.
    idle_timeout: float = 75.0
    # --body_timeout: a call's request message must arrive within this long of its headers (grpc/server.py).
    message_timeout: float = 60.0
    # Then the connection gets GOAWAY (gRPC clients go on, on a new one), and its calls have the grace to finish.
    max_connection_age: float = 600.0
    # --body_timeout + --timeout by default: a call begun just before GOAWAY has time to be sent and answered.
    max_connection_age_grace: float = 180.0

    def server_options(self) -> list[tuple[str, int]]:
        """These bounds as grpc.aio.server's options (gRPC core's channel arguments)."""
        return [
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_connection_idle_ms", milliseconds(self.idle_timeout)),
            ("grpc.server_handshake_timeout_ms", milliseconds(self.idle_timeout)),
            ("grpc.max_connection_age_ms", milliseconds(self.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", milliseconds(self.max_connection_age_grace)),
            ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
            ("grpc.http2.bdp_probe", 0),
        ]

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "GRPCBounds":
        """From ``modelhost serve``'s flags: this module's, and the HTTP timeouts that the gRPC ones follow."""
        grace = args.grpc_max_connection_age_grace
        return cls(
            max_concurrent_streams=args.grpc_max_concurrent_streams,
            max_connections=args.grpc_max_connections,
            idle_timeout=args.timeout_keep_alive or args.idle_timeout,  # KServe's spelling wins, as for HTTP
            message_timeout=args.body_timeout,
            max_connection_age=args.grpc_max_connection_age,
            max_connection_age_grace=args.body_timeout + args.timeout if grace is None else grace,
        )


def milliseconds(seconds: float) -> int:
    return min(INT_MAX, round(seconds * 1000))


def add_arguments(parser: argparse.ArgumentParser, flag: Callable[[Callable], Callable[[str], object]]) -> None:
    """The operator's flags; ``flag(check)`` makes an argparse type of one of ``settings``' checks."""
    defaults = GRPCBounds()
    parser.add_argument(
        "--grpc_max_concurrent_streams", "--grpc-max-concurrent-streams", type=flag(COUNT),
        default=defaults.max_concurrent_streams, metavar="N",
        help="gRPC calls open at once on one connection; a client's further calls wait for one to end "
        f"(default: {defaults.max_concurrent_streams})",
    )
    parser.add_argument(
        "--grpc_max_connections", "--grpc-max-connections", type=flag(COUNT), default=defaults.max_connections,
        metavar="N", help="gRPC connections each server process keeps; more are closed at once (default: 1000, or "
        "half the open-file limit when lower)",
    )
    parser.add_argument(
        "--grpc_max_connection_age", "--grpc-max-connection-age", type=flag(Bounded(float, 0, low_included=False)),
        default=defaults.max_connection_age, metavar="SECONDS",
        help="seconds after which a gRPC connection is asked to go (GOAWAY; clients reconnect) "
        f"(default: {defaults.max_connection_age:g})",
    )
    parser.add_argument(
        "--grpc_max_connection_age_grace", "--grpc-max-connection-age-grace", type=flag(Bounded(float, 0)),
        default=None, metavar="SECONDS",
        help="then, seconds its calls have to finish before it is closed (default: --body_timeout + --timeout, 180)",
    )

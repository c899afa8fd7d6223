"""gRPC clients that hold what they can: unfinished messages, answers never read, streams past the maximum,
connections past the limit or that never send a byte. The server bounds each (grpc/bounds.py), closes what
outlives its time, and goes on answering everyone else.

Raw HTTP/2 (``http2_client``) plays the hostile client; a plain gRPC channel, the well-behaved one.
"""

import socket
from contextlib import contextmanager

import grpc
import numpy as np
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from http2_client import REFUSED_STREAM, RawGRPCClient, exchange
from modelhost.cli import build_parser
from modelhost.grpc.bounds import GRPCBounds
from modelhost.protocol import grpc_v2
from support import running_server
from test_hostile_clients import closed_by_server
from test_tls import make_pair, ready

ECHO = ["--replicas", "0", "--plugin", "echo=fixture_plugins.behaving:Doubler"]
MIB = 1024 * 1024
MESSAGE_LIMIT, STREAMS, CONNECTIONS = MIB, 3, 4
# Room for what is not the clients' bytes: gRPC's per-call state, the allocator's rounding and the pages it keeps
# (measured: 0.3 MiB over what the clients held).
RSS_MARGIN = 6 * MIB
MESSAGES = grpc_v2.messages()
INFER = MESSAGES.ModelInferRequest(
    model_name="echo", inputs=[MESSAGES.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1])],
    raw_input_contents=[np.float32(1).tobytes()]).SerializeToString()


@pytest.fixture(scope="module")
def bounded():
    """Small bounds, so that a test reaches them; the timeouts are the defaults, longer than the module runs."""
    with running_server(*ECHO, "--grpc_max_receive_message_length", str(MESSAGE_LIMIT),
                        "--grpc_max_concurrent_streams", str(STREAMS), "--grpc_max_connections", str(CONNECTIONS)) \
            as server:
        yield server


@pytest.fixture(scope="module")
def short_lived():
    """Timeouts of seconds; the connection's age stays far longer, so that it closes nothing these tests see."""
    with running_server(*ECHO, "--idle_timeout", "2", "--body_timeout", "2") as server:
        yield server


@pytest.fixture(scope="module")
def aging(tmp_path_factory):
    """With TLS, where a connection exists for HTTP/2 (and the idle timeout) only once its handshake is done;
    ages of seconds."""
    cert, key = make_pair(tmp_path_factory.mktemp("tls"), "tls")
    with running_server(*ECHO, "--ssl_certfile", str(cert), "--ssl_keyfile", str(key), "--idle_timeout", "2",
                        "--grpc_max_connection_age", "3", "--grpc_max_connection_age_grace", "2",
                        ready=None) as server:
        ready(server, cert)
        yield server, grpc.ssl_channel_credentials(cert.read_bytes())


def doubled(channel: grpc.Channel) -> float:
    """A well-behaved client's ModelInfer of 1.0 to the echo model, which answers 2.0. It waits for a connection:
    the last test's, closed, may hold its place under the connection limit until the server has seen them go."""
    infer = channel.unary_unary(f"/{grpc_v2.SERVICE}/ModelInfer",
                                response_deserializer=MESSAGES.ModelInferResponse.FromString)
    answer = infer(INFER, timeout=30, wait_for_ready=True)
    return float(np.frombuffer(answer.raw_output_contents[0], np.float32)[0])


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.grpc_address.rsplit(":", 1)[1])), timeout=30)


def still_serving(server) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        assert doubled(channel) == 2.0


@contextmanager
def raw_clients(address: str, count: int, **options):
    """``count`` raw HTTP/2 clients of the server, each on a connection of its own, closed at the end."""
    clients = [RawGRPCClient(address, **options) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def test_streams_past_the_per_connection_maximum_are_refused(bounded):
    with raw_clients(bounded.grpc_address, 1) as [client]:
        # The server's SETTINGS say the maximum; the client acknowledges them (streams opened before that are
        # refused too, with ENHANCE_YOUR_CALM), then opens more streams regardless.
        assert exchange([client], lambda: client.h2.remote_settings.max_concurrent_streams == STREAMS, timeout=30)
        calls = [client.start_call(announced=100) for _ in range(STREAMS + 2)]  # each message left unfinished
        exchange([client], lambda: len(client.resets) == 2, timeout=30)
        assert {call: client.resets.get(call) for call in calls} == \
            {**dict.fromkeys(calls[:STREAMS]), **dict.fromkeys(calls[STREAMS:], REFUSED_STREAM)}
    still_serving(bounded)


def test_connections_past_the_limit_are_closed_and_the_server_serves_on(bounded):
    with grpc.insecure_channel(bounded.grpc_address) as channel:
        assert doubled(channel) == 2.0  # its connection is one of those the server keeps
        with raw_clients(bounded.grpc_address, CONNECTIONS + 3) as clients:
            # Of 8 connections, the channel's among them, the server keeps 4 (fewer while it has yet to see the
            # last test's go).
            assert exchange(clients, lambda: sum(client.closed for client in clients) >= 4, timeout=30)
            assert not all(client.closed for client in clients)
            assert doubled(channel) == 2.0
    still_serving(bounded)


def test_what_unfinished_and_unread_calls_hold_is_bounded_and_others_are_served_meanwhile(bounded):
    """The most a client can hold is the limit's connections, each with the maximum of streams, each with a
    message of the largest size. Without any one of the bounds these clients would hold more than that: without
    the connection limit, on 24 connections; without the stream maximum, 10 messages on each; without the small
    window, the bytes sent after each whole request (gRPC's default window lets 4 MiB through)."""
    server = psutil.Process(bounded.process.pid)
    with grpc.insecure_channel(bounded.grpc_address) as channel:
        assert doubled(channel) == 2.0  # connected before the hostile clients take every other connection
        before = server.memory_info().rss
        with raw_clients(bounded.grpc_address, 24, read_answers=False) as hostile:
            for client in hostile:
                for call in range(12):
                    if call in (0, 2):  # a whole request, whose answer is never read, then bytes never asked for
                        client.start_call(INFER, then=16 * MIB)
                    else:  # a message that never completes: gRPC buffers all it announces
                        client.start_call(announced=MESSAGE_LIMIT, then=MESSAGE_LIMIT - 1)
            exchange(hostile, lambda: all(client.done_sending() for client in hostile), timeout=60, quiet=2)
            grown = server.memory_info().rss - before
            held = sum(client.held() for client in hostile)
            assert held >= 2 * MESSAGE_LIMIT, "the hostile clients never held their messages: nothing was tested"
            # The connection limit counts the well-behaved client's too, which holds nothing.
            assert grown < (CONNECTIONS - 1) * STREAMS * MESSAGE_LIMIT + RSS_MARGIN, (grown / MIB, held / MIB)
            assert doubled(channel) == 2.0
    still_serving(bounded)


def test_connections_that_never_send_a_frame_or_sit_idle_are_closed(short_lived):
    silent = [connect(short_lived) for _ in range(5)]
    half_preface = connect(short_lived)
    half_preface.sendall(b"PRI * HTTP/2.0\r\n")
    idle = RawGRPCClient(short_lived.grpc_address)  # the preface and SETTINGS, then no call
    try:
        for connection in [*silent, half_preface]:
            closed_by_server(connection)  # its SETTINGS, GOAWAY and close; socket.timeout (30 s) fails the test
        assert exchange([idle], lambda: idle.closed, timeout=30)
        assert idle.goaways  # told, then closed
    finally:
        for connection in [*silent, half_preface, idle]:
            connection.close()
    still_serving(short_lived)


def test_a_message_that_does_not_arrive_within_body_timeout_ends_its_call(short_lived):
    with raw_clients(short_lived.grpc_address, 1) as [client]:
        call = client.start_call(b"part of it", announced=1000)
        assert exchange([client], lambda: call in client.ends or client.closed, timeout=30), client.goaways
        assert client.ends.get(call, {}).get("grpc-status") == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])
        assert "body_timeout" in client.ends[call]["grpc-message"]
    still_serving(short_lived)


def test_tls_handshakes_that_never_finish_are_closed(aging):
    server, _ = aging
    silent = connect(server)
    half_hello = connect(server)
    half_hello.sendall(b"\x16\x03\x01\x02\x00\x01")  # a TLS record's header, announcing a ClientHello
    try:
        for connection in (silent, half_hello):
            assert closed_by_server(connection) == b""  # the socket's timeout bounds the wait
    finally:
        silent.close()
        half_hello.close()


def test_a_call_that_never_ends_goes_with_its_connection_after_the_age_and_grace(aging):
    """The health service's Watch, a call that is never idle and never ends: only the connection's age ends it,
    as it would any other call that outlives every other bound. The client then calls on a new connection."""
    server, credentials = aging
    with grpc.secure_channel(server.grpc_address, credentials) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value  # not the call's own 60 s deadline
        assert doubled(channel) == 2.0


def test_the_options_follow_the_flags():
    """What each flag sets, as gRPC names it; the tests above show that gRPC does what these say."""
    args = build_parser().parse_args(["serve", "--idle_timeout", "5", "--body_timeout", "3", "--timeout", "10",
                                      "--grpc_max_concurrent_streams", "7", "--grpc_max_connections", "9",
                                      "--grpc_max_connection_age", "30"])
    bounds = GRPCBounds.from_arguments(args)
    assert bounds.message_timeout == 3  # not an option: grpc/server.py's MessageDeadline keeps it
    assert dict(bounds.server_options()) == {
        "grpc.max_concurrent_streams": 7, "grpc.max_allowed_incoming_connections": 9,
        "grpc.max_connection_idle_ms": 5000, "grpc.server_handshake_timeout_ms": 5000,
        "grpc.max_connection_age_ms": 30000, "grpc.max_connection_age_grace_ms": 13000,  # --body_timeout + --timeout
        "grpc.http2.lookahead_bytes": 64 * 1024, "grpc.http2.bdp_probe": 0,
    }

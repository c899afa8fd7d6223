"""A gRPC client in raw HTTP/2 (python-hyper's h2) that does what no gRPC library would: announces a message it
never finishes, opens streams past the server's maximum, never reads an answer, never ends a call."""

import select
import socket
import struct
import time
from typing import Callable, Iterable, Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
REFUSED_STREAM = 7  # RST_STREAM's error code for a stream past SETTINGS_MAX_CONCURRENT_STREAMS
FRAME_HEADER = struct.Struct(">I")  # the first 4 of a frame's 9 header bytes: length (24 bits), then type
GOAWAY = 7


class IgnoresStreamLimit(h2.connection.H2Connection):
    """h2 refuses to open streams past the server's MAX_CONCURRENT_STREAMS; a hostile client would not."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


class RawGRPCClient:
    def __init__(self, address: str, read_answers: bool = True):
        host, port = address.rsplit(":", 1)
        self.socket = socket.create_connection((host, int(port)), timeout=10)
        self.authority = address
        self.h2 = IgnoresStreamLimit(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        # A window of 0 keeps each answer's message on the server, unsent; else windows never hold anything up.
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1 if read_answers else 0})
        if read_answers:
            self.h2.increment_flow_control_window(2**30)
        self.unsent: dict[int, int] = {}  # stream: bytes still to send on it
        self.sent: dict[int, int] = {}  # stream: bytes sent on it
        self.resets: dict[int, int] = {}  # stream: the error code of the server's RST_STREAM
        self.answered: set[int] = set()  # streams with a message from the server
        self.ends: dict[int, dict] = {}  # stream: the headers that ended it (grpc-status, grpc-message)
        self.goaways: list[bytes] = []  # each GOAWAY's debug data: gRPC says why it closes the connection
        self.closed = False  # by the server
        self.received = b""  # bytes of a frame still to come
        self.flush()

    def start_call(self, message: bytes = b"", announced: Optional[int] = None, then: int = 0,
                   path: str = MODEL_INFER) -> int:
        """A call announcing a message of ``announced`` bytes (its true length by default) of which ``message``
        is sent, then ``then`` bytes more as the server's windows let them through; never ended."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                      (":authority", self.authority), ("content-type", "application/grpc"),
                                      ("te", "trailers")])
        length = len(message) if announced is None else announced
        self.h2.send_data(stream, struct.pack(">BI", 0, length) + message)
        self.unsent[stream], self.sent[stream] = then, 5 + len(message)
        self.flush()
        return stream

    def flush(self) -> None:
        try:
            self.socket.sendall(self.h2.data_to_send())
        except OSError:
            self.closed = True

    def send_what_windows_allow(self) -> bool:
        """Whether anything was sent."""
        moved = False
        for stream, unsent in self.unsent.items():
            if not unsent or stream in self.resets or self.goaways:
                continue
            try:
                window = min(self.h2.local_flow_control_window(stream), unsent, 1024 * 1024)
            except h2.exceptions.StreamClosedError:
                continue
            while window > 0:
                size = min(window, self.h2.max_outbound_frame_size)
                self.h2.send_data(stream, b"x" * size)
                window -= size
                self.unsent[stream] -= size
                self.sent[stream] += size
                moved = True
        self.flush()
        return moved

    def receive(self) -> bool:
        """Whether the server said anything. Frames go to h2 one by one, so that a GOAWAY is seen even when h2,
        closed by it, refuses the frames after it."""
        try:
            data = self.socket.recv(1024 * 1024)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.received += data
        while len(self.received) >= 9:
            length, kind = FRAME_HEADER.unpack(self.received[:4])[0] >> 8, self.received[3]
            if len(self.received) < 9 + length:
                break
            frame, self.received = self.received[:9 + length], self.received[9 + length:]
            after_goaway = bool(self.goaways)
            if kind == GOAWAY:
                self.goaways.append(frame[17:])  # after the last stream's id and the error code
            if after_goaway:
                continue  # h2 takes nothing after the first GOAWAY, though the server may still finish its calls
            for event in self.h2.receive_data(frame):
                if isinstance(event, h2.events.DataReceived):
                    self.answered.add(event.stream_id)
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    self.resets[event.stream_id] = event.error_code
                elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and \
                        event.stream_ended:
                    self.ends[event.stream_id] = dict(event.headers)
        if not self.goaways:
            self.flush()  # h2's answers: SETTINGS and PING acknowledgements
        return True

    def done_sending(self) -> bool:
        return self.closed or bool(self.goaways) or all(not unsent or stream in self.resets
                                                 for stream, unsent in self.unsent.items())

    def held(self) -> int:
        """Bytes sent on the calls the server has neither refused nor ended, while it keeps the connection."""
        return 0 if self.closed else sum(sent for stream, sent in self.sent.items()
                                         if stream not in self.resets and stream not in self.ends)

    def close(self) -> None:
        self.socket.close()


def exchange(clients: Iterable[RawGRPCClient], until: Callable[[], bool], timeout: float, quiet: float = 0) -> bool:
    """Sends and receives for every client until ``until()`` holds, or for ``quiet`` seconds nothing moved (when
    not 0), or ``timeout`` seconds passed; whether ``until()`` holds."""
    clients = list(clients)
    deadline = time.monotonic() + timeout
    last_moved = time.monotonic()
    while not until() and time.monotonic() < deadline:
        if any([client.send_what_windows_allow() for client in clients if not client.closed]):
            last_moved = time.monotonic()
        open_ones = [client for client in clients if not client.closed]
        if not open_ones:
            break
        readable, _, _ = select.select([client.socket for client in open_ones], [], [], 0.05)
        for client in open_ones:
            if client.socket in readable and client.receive():
                last_moved = time.monotonic()
        if quiet and time.monotonic() - last_moved > quiet:
            break
    return until()

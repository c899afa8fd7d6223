"""A real OTLP trace receiver on 127.0.0.1, over HTTP (``/v1/traces``, protobuf) or gRPC, keeping what it is sent,
and what the tests expect of the traces servers send it.

A few lines of the OpenTelemetry protocol's own messages (``opentelemetry-proto``), so that the tests see the
spans exactly as a collector would.
"""

import http.server
import threading
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from support import plugin_env, wait_until

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
STAGES = {"queue", "preprocess", "predict", "postprocess"}
TRACED = ["--plugin", "traced=fixture_plugins.tracing:TracedWork"]


@dataclass
class Received:
    """What a receiver has been sent: each span with its resource's attributes."""

    endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT for it
    spans: list = field(default_factory=list)  # (resource attributes, opentelemetry.proto.trace.v1.Span)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, body: bytes) -> None:
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource_spans in export.resource_spans:
                resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
                self.spans += [(resource, span) for scope in resource_spans.scope_spans for span in scope.spans]

    def of_trace(self, trace_id: str) -> list:
        with self.lock:
            return [span for _, span in self.spans if span.trace_id.hex() == trace_id]


@contextmanager
def otlp_receiver(protocol: str) -> Iterator[Received]:
    """``protocol``: ``http/protobuf`` or ``grpc``, as OTEL_EXPORTER_OTLP_PROTOCOL names them."""
    received = Received()
    if protocol == "grpc":
        server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(GRPCTraceService(received), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        received.endpoint = f"http://127.0.0.1:{port}"
        try:
            yield received
        finally:
            server.stop(0)
        return
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(received))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    received.endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield received
    finally:
        httpd.shutdown()
        httpd.server_close()


class GRPCTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received):
        self.received = received

    def Export(self, request, context):
        self.received.keep(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


def handler_for(received: Received) -> type:
    class TracesHandler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            received.keep(body)
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args):
            pass

    return TracesHandler


def exporting_to(received: Received, protocol: str) -> dict:
    """A server's environment for exporting its traces to the receiver, in batches a moment apart."""
    return {**plugin_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": received.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "50"}


def received_trace(received: Received, trace_id: str, names: set) -> dict:
    """The trace's spans by name, once every one of ``names`` has arrived."""
    wait_until(lambda: names <= {span.name for span in received.of_trace(trace_id)})
    return {span.name: span for span in received.of_trace(trace_id)}


def assert_nested(spans: dict, request_span: str, client_span: str) -> None:
    """The request span continues the client's; the stages are its children, the plugin's span is predict's."""
    assert spans[request_span].parent_span_id.hex() == client_span
    assert spans[request_span].kind == spans[request_span].SPAN_KIND_SERVER
    for name in STAGES:
        assert spans[name].parent_span_id == spans[request_span].span_id, name
    assert spans["plugin-work"].parent_span_id == spans["predict"].span_id

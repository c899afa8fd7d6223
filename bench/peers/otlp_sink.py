"""An OTLP/HTTP trace receiver that takes every export and keeps nothing: what a traced server under load sends
its spans to, so that the benchmark counts the server's cost of tracing and no collector's.

    python bench/peers/otlp_sink.py PORT
"""

import http.server
import sys

EMPTY_ANSWER = b""  # an ExportTraceServiceResponse with no fields set serializes to no bytes


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the exporter keeps its connection

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(EMPTY_ANSWER)))
        self.end_headers()
        self.wfile.write(EMPTY_ANSWER)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()

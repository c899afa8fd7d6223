"""What modelhost's HTTP/1.1 layer costs a request, with no socket, no loop turn and no model.

    python bench/connection_layer.py [--requests N] [--rounds R]
    PYTHONPATH=bench/.cache/guard/SHA/host python bench/connection_layer.py   # another checkout (guard.py's)

One ``http.connection.Connection`` is fed the same V2 request (echo's JSON body, 171 bytes) over and over, as
``data_received`` would be, with a transport that drops what is written; a bare delegate answers each with
``write_answer``, as an inference exchange does. What is timed is the layer alone: httptools' parse, the request's
turn, Tornado's routing and ``HTTPServerRequest``, the answer's one write. Prints µs a request for each round.
"""

import argparse
import asyncio
import time

import tornado.httputil
import tornado.routing
import tornado.web
from modelhost.http.connection import Connection
from modelhost.http.httpserver import HTTPServer

BODY = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,16],"data":' + str(list(range(16))).encode() + b"}]}"
REQUEST = (b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class Answers(tornado.httputil.HTTPMessageDelegate):
    def __init__(self, request: tornado.httputil.HTTPServerRequest):
        self.request = request

    def finish(self) -> None:
        self.request.connection.write_answer(200, "OK", [("Content-Length", "2")], b"{}")


class Route(tornado.routing.Router):
    def find_handler(self, request, **kwargs):
        return Answers(request)


class Transport:
    """What the connection asks of asyncio's transport; what it writes goes nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(requests: int, rounds: int) -> None:
    connection = Connection(HTTPServer(tornado.web.Application([(r"/.*", Route())]), max_body_size=2**20))
    connection.connection_made(Transport())
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests):
            connection.data_received(REQUEST)
        print(f"{(time.perf_counter() - started) / requests * 1e6:.2f} µs a request ({requests} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.requests, args.rounds))


if __name__ == "__main__":
    main()

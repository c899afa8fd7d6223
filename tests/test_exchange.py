"""The HTTP exchange with a fake connection and a fake runner: what it writes, and that it writes once."""

import asyncio

import tornado.httputil

from modelhost.http.exchange import V1, Exchange, InferenceRoute
from modelhost.http.handling import BodyDeadlines, Serving
from modelhost.logs import request_id_source
from modelhost.inference import Inference
from modelhost.inflight import InFlight
from modelhost.metrics import Metrics
from modelhost.plugins import PluginSpec
from modelhost.repository import ModelRepository


class FakeConnection:
    def __init__(self):
        self.written: list[tuple[int, tornado.httputil.HTTPHeaders, bytes]] = []
        self.close_callback = None

    def set_close_callback(self, callback):
        self.close_callback = callback

    def write_answer(self, status, reason, headers, body):
        self.written.append((status, tornado.httputil.HTTPHeaders(headers), body))


class FakeRunner:
    def __init__(self, spec, count, inline):
        self.spec, self.inline, self.reason, self.ready, self.metadata = spec, inline, "", True, {}
        self.elsewhere = None
        self.outcomes: list[asyncio.Future] = []

    def require_ready(self):
        pass

    def submit(self, request):
        outcome = asyncio.get_running_loop().create_future()
        if self.inline:
            outcome.set_result(b'{"predictions":[%d]}' % (request.instances[0] * 2))
        self.outcomes.append(outcome)
        return outcome


def exchange_for(body_chunks: list[bytes], inline=True, max_buffer_size=100):
    in_flight = InFlight()
    repository = ModelRepository([PluginSpec("m", "fake:M")], lambda spec, count, runner: FakeRunner(spec, count, inline),
                                 in_flight, 1, True)
    serving = Serving(Inference(repository, in_flight, Metrics()), max_buffer_size, None, request_id_source(),
                      BodyDeadlines(60))
    connection = FakeConnection()
    headers = tornado.httputil.HTTPHeaders({"Host": "test", "Transfer-Encoding": "chunked", "x-request-id": "x-1"})
    start_line = tornado.httputil.RequestStartLine("POST", "/v1/models/m:predict", "HTTP/1.1")
    request = tornado.httputil.HTTPServerRequest(start_line=start_line, headers=headers, connection=connection)
    exchange = Exchange(InferenceRoute(V1, serving), request, b"m", None)
    exchange.headers_received(start_line, headers)
    for chunk in body_chunks:
        exchange.data_received(chunk)
    return exchange, connection, repository.runners["m"], in_flight


def test_a_request_is_answered_once_with_its_id_and_its_length():
    async def scenario():
        exchange, connection, _, in_flight = exchange_for([b'{"instances": ', b"[21]}"])
        exchange.finish()
        return connection.written, in_flight

    [(status, headers, body)], in_flight = asyncio.run(scenario())
    assert (status, body) == (200, b'{"predictions":[42]}')
    assert headers["x-request-id"] == "x-1" and headers["Content-Length"] == str(len(body))
    assert in_flight.calls == {}


def test_a_chunked_body_outgrowing_the_limit_is_refused_once_and_never_decoded():
    async def scenario():
        exchange, connection, runner, _ = exchange_for([b"x" * 60, b"x" * 60, b"x" * 60])
        exchange.finish()
        return connection.written, runner

    written, runner = asyncio.run(scenario())
    assert [status for status, _, _ in written] == [413] and runner.outcomes == []


def test_a_client_that_leaves_while_its_request_waits_gets_nothing_written_and_leaves_nothing_in_flight():
    async def scenario():
        exchange, connection, runner, in_flight = exchange_for([b'{"instances": [1]}'], inline=False)
        exchange.finish()
        connection.close_callback()
        await asyncio.sleep(0)
        return connection.written, runner, in_flight

    written, runner, in_flight = asyncio.run(scenario())
    assert written == [] and runner.outcomes[0].cancelled() and in_flight.calls == {}

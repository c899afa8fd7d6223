"""OpenTelemetry traces: a span per request continuing the client's traceparent, its stages as children, and a
plugin's own spans under predict, wherever the model runs.

In this process, with the SDK's in-memory exporter, in both runner modes (a
worker's spans come back to the server with its outcomes); then from real
servers to a real OTLP receiver on 127.0.0.1, over HTTP and over gRPC.
"""

import os

import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelhost import tracing
from modelhost.plugins import PluginSpec
from modelhost.protocol import grpc_v2
from modelhost.testing import Client, serving
from modelhost.tracing.shipping import ServerTracerProvider
from otlp_receiver import (CLIENT_SPAN, CLIENT_TRACE, STAGES, TRACED, TRACEPARENT, assert_nested, exporting_to,
                           otlp_receiver, received_trace)
from support import TESTS, running_server, wait_until
from test_grpc import call



@pytest.fixture(scope="module")
def exported():
    """The spans this process's servers finish: OpenTelemetry's global provider can be set once a process, so
    it is set for the module and shut down after it (later servers here then export nothing)."""
    exporter = InMemorySpanExporter()
    provider = ServerTracerProvider([SimpleSpanProcessor(exporter)], Resource({"service.name": "modelhost"}))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "something in this process set a tracer provider before"
    yield exporter
    provider.shutdown()


@pytest.fixture(params=["in-process", "workers"])
def traced(request, exported, monkeypatch):
    """A served TracedWork, in the server process or in a worker process (which imports it from tests/)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    spec = PluginSpec(name="traced", target="fixture_plugins.tracing:TracedWork")
    with serving(spec, replicas=0 if request.param == "in-process" else 1) as port:
        exported.clear()
        yield Client(port, "traced")


def server_spans(exported, count: int = 1) -> list:
    """The request spans, once ``count`` have ended: a request's span ends just after its answer is written."""
    wait_until(lambda: len([span for span in exported.get_finished_spans() if span.kind == trace.SpanKind.SERVER])
               >= count)
    return [span for span in exported.get_finished_spans() if span.kind == trace.SpanKind.SERVER]


def spans_of(exported, trace_id: int) -> dict:
    server_spans(exported)
    return {span.name: span for span in exported.get_finished_spans() if span.context.trace_id == trace_id}


def test_a_request_continues_the_clients_trace_with_its_stages_and_the_plugins_span_under_it(traced, exported):
    answer = traced.post("/v1/models/traced:predict", {"instances": [1, 2, 3]}, TRACEPARENT)
    assert answer.json() == {"predictions": [2, 4, 6]}
    spans = spans_of(exported, int(CLIENT_TRACE, 16))
    request_span = spans["POST /v1/models/{name}:predict"]
    assert request_span.kind == trace.SpanKind.SERVER
    assert request_span.parent.span_id == int(CLIENT_SPAN, 16) and request_span.parent.is_remote
    assert request_span.attributes["modelhost.model"] == "traced"
    assert request_span.attributes["modelhost.protocol"] == "v1"
    assert request_span.attributes["modelhost.status"] == 200
    assert request_span.attributes["modelhost.request_id"] == answer.headers["x-request-id"]
    for name in STAGES:
        assert spans[name].parent.span_id == request_span.context.span_id, name
        assert spans[name].attributes["modelhost.batch_size"] == 1
    assert spans["plugin-work"].parent.span_id == spans["predict"].context.span_id
    assert spans["plugin-work"].attributes["rows"] == 3
    assert request_span.start_time <= spans["queue"].start_time <= spans["predict"].start_time
    assert spans["postprocess"].end_time <= request_span.end_time


def test_without_a_traceparent_a_request_starts_its_own_trace(traced, exported):
    traced.post("/v2/models/traced/infer", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                                        "data": [1, 2]}]})
    [request_span] = server_spans(exported)
    assert request_span.name == "POST /v2/models/{name}/infer" and request_span.parent is None
    assert STAGES | {"plugin-work"} <= set(spans_of(exported, request_span.context.trace_id))


@pytest.mark.parametrize("replicas", [0, 1], ids=["in-process", "workers"])
def test_a_generation_has_a_span_of_its_own_under_its_request(replicas, exported, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    with serving(PluginSpec(name="words", target="fixture_plugins.generating:Words"), replicas=replicas) as port:
        exported.clear()
        answer = requests.post(f"http://127.0.0.1:{port}/openai/v1/completions", headers=TRACEPARENT, timeout=30,
                               json={"model": "words", "prompt": "traced", "max_tokens": 3, "stream": True})
        assert answer.text.endswith("data: [DONE]\n\n")
        spans = spans_of(exported, int(CLIENT_TRACE, 16))
    request_span = spans[tracing.REQUEST_SPANS["openai"]]
    assert request_span.attributes["modelhost.status"] == 200
    for stage in ("preprocess", "generate"):  # one span for the whole generation, however many pieces
        assert spans[stage].parent.span_id == request_span.context.span_id, stage
    assert spans["generate"].end_time <= request_span.end_time


def test_a_refused_request_is_traced_with_its_status_and_a_failure_is_an_error(traced, exported):
    assert traced.post("/v2/models/traced/infer", {"inputs": []}, TRACEPARENT).status == 400
    assert traced.post("/v1/models/traced:predict", {"instances": ["text"]}, TRACEPARENT).status == 500
    statuses = {span.attributes["modelhost.status"]: span.status.status_code for span in server_spans(exported, 2)}
    assert statuses == {400: trace.StatusCode.UNSET, 500: trace.StatusCode.ERROR}


@pytest.mark.parametrize("environ, wanted", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
])
def test_tracing_is_on_only_when_the_environment_asks(environ, wanted):
    assert tracing.wanted(environ) is wanted


def test_an_untraced_server_gives_requests_no_trace_context():
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    with running_server("--plugin", "fixture_plugins.tracing:SeesTraceContext", env={**env, "PYTHONPATH": str(TESTS)}) \
            as server:
        answer = requests.post(server.url + "/v1/models/SeesTraceContext:predict", json={"instances": [1]},
                               headers=TRACEPARENT, timeout=30)
        assert answer.json() == {"predictions": [False]}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_of_rest_and_grpc_requests_reach_an_otlp_receiver(protocol):
    grpc_trace, grpc_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with otlp_receiver(protocol) as received, \
            running_server(*TRACED, env=exporting_to(received, protocol)) as server:
        assert requests.post(server.url + "/v1/models/traced:predict", json={"instances": [1]}, headers=TRACEPARENT,
                             timeout=30).json() == {"predictions": [2]}
        request = grpc_v2.messages().ModelInferRequest(model_name="traced", inputs=[
            {"name": "x", "datatype": "FP32", "shape": [1], "contents": {"fp32_contents": [1.0]}}])
        call(server, "ModelInfer", request, metadata=(("traceparent", f"00-{grpc_trace}-{grpc_span}-01"),))
        rest = received_trace(received, CLIENT_TRACE, STAGES | {"plugin-work", "POST /v1/models/{name}:predict"})
        assert_nested(rest, "POST /v1/models/{name}:predict", CLIENT_SPAN)
        over_grpc = received_trace(received, grpc_trace, STAGES | {"plugin-work", tracing.REQUEST_SPANS["grpc"]})
        assert_nested(over_grpc, tracing.REQUEST_SPANS["grpc"], grpc_span)
        assert {resource["service.name"] for resource, _ in received.spans} == {"modelhost"}


@pytest.mark.parametrize("predictor_protocol", ["v1", "grpc-v2"])
def test_a_transformers_trace_continues_in_its_predictor(predictor_protocol):
    with otlp_receiver("http/protobuf") as received, \
            running_server(*TRACED, env=exporting_to(received, "http/protobuf")) as predictor:
        target = predictor.grpc_address if predictor_protocol == "grpc-v2" else predictor.url.removeprefix("http://")
        with running_server("--plugin", "traced=fixture_plugins.transforming:PlusOne", "--predictor_host", target,
                            "--predictor_protocol", predictor_protocol,
                            env=exporting_to(received, "http/protobuf")) as transformer:
            answer = requests.post(transformer.url + "/v1/models/traced:predict", json={"instances": [1]},
                                   headers=TRACEPARENT, timeout=30)
            assert answer.json() == {"predictions": [4]}  # (1 + 1) * 2
            predictor_request = tracing.REQUEST_SPANS["grpc" if predictor_protocol == "grpc-v2" else "v1"]
            # Each server's request span and stages, the predictor's plugin span, the transformer's call to it.
            wait_until(lambda: len(received.of_trace(CLIENT_TRACE)) >= 2 * (1 + len(STAGES)) + 2)
            spans = received.of_trace(CLIENT_TRACE)
            by_id = {span.span_id: span for span in spans}
            [hop] = [span for span in spans if span.name == "predictor"]
            assert hop.kind == hop.SPAN_KIND_CLIENT and by_id[hop.parent_span_id].name == "predict"
            [served] = [span for span in spans if span.parent_span_id == hop.span_id]
            assert served.name == predictor_request and served.kind == served.SPAN_KIND_SERVER
            assert "plugin-work" in {span.name for span in spans}

"""OpenTelemetry traces of inference requests: off unless the environment asks for them, and then one trace each.

The server traces when OpenTelemetry's SDK is installed (the ``tracing``
extra) and the standard variables ask for traces: ``OTEL_TRACES_EXPORTER``
other than ``none``, or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` turns it
off. Otherwise requests carry no trace context, and the request path asks
nothing more of this module than whether they do.

Each request gets a server span that continues the client's W3C
``traceparent``. Its context travels on the request (``trace_context``) to
wherever the model runs, which adds a span per stage (``queue``,
``preprocess``, ``predict``, ``postprocess``, and the transformer's call to
its predictor, whose ``traceparent`` goes on the call), current while the
hook runs, so that a plugin's own spans nest under it. Worker processes and
Ray replicas hand their finished spans back to the server (``shipping``).
"""

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Optional

from .. import __version__
from ..errors import CannotServe

try:
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link, SpanKind, StatusCode

    from .shipping import ReplicaTracerProvider, ServerTracerProvider
except ImportError:  # no SDK: nothing traces
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..request import InferenceRequest

SCOPE = "modelhost"
REQUEST_SPANS = {  # by the inference call's protocol: named as OpenTelemetry's HTTP and RPC conventions name them
    "v1": "POST /v1/models/{name}:predict",
    "v2": "POST /v2/models/{name}/infer",
    "grpc": "inference.GRPCInferenceService/ModelInfer",
    "openai": "POST /openai/v1/{route}",
}
EXPLAIN_SPAN = "POST /v1/models/{name}:explain"
# OTLP's protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them, and the exporters that speak them.
OTLP_EXPORTERS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
NO_SPAN = contextlib.nullcontext()


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces (OpenTelemetry's own default, an OTLP exporter to localhost,
    would trace every server that has the SDK installed)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if "OTEL_TRACES_EXPORTER" in environ:
        return environ["OTEL_TRACES_EXPORTER"].strip().lower() not in ("", "none")
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def server_tracer(environ: Mapping[str, str] = os.environ) -> Optional["trace.Tracer"]:
    """The serving process's tracer, its provider installed as OpenTelemetry's global one on the first call
    (after a fork: the export thread is the process's own); None when tracing is off.

    A ``ServerTracerProvider`` installed before (a test's, with an in-memory exporter) is used as it is.
    """
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, ServerTracerProvider):
        if not wanted(environ):
            return None
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME)).startswith("unknown_service"):  # no OTEL_SERVICE_NAME
            resource = resource.merge(Resource({SERVICE_NAME: "modelhost"}))
        provider = ServerTracerProvider([BatchSpanProcessor(exporter) for exporter in exporters(environ)], resource)
        trace.set_tracer_provider(provider)
    return provider.get_tracer(SCOPE, __version__)


def exporters(environ: Mapping[str, str]) -> list:
    """The span exporters OTEL_TRACES_EXPORTER names (default ``otlp``), found as OpenTelemetry's own
    auto-configuration finds them: by name, in the ``opentelemetry_traces_exporter`` entry points."""
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf")
    made = []
    for name in (name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()):
        if name == "otlp":
            if protocol not in OTLP_EXPORTERS:
                raise CannotServe(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of "
                                  f"{', '.join(OTLP_EXPORTERS)}")
            name = OTLP_EXPORTERS[protocol]
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise CannotServe(f"OTEL_TRACES_EXPORTER names {name!r}, and no installed package provides it "
                              "(pip install 'modelhost[tracing]' brings the OTLP exporters)")
        made.append(next(iter(found)).load()())
    return made


def flush() -> None:
    """Export what the serving process has finished: it leaves without running exit handlers."""
    if trace is not None and isinstance(provider := trace.get_tracer_provider(), ServerTracerProvider):
        provider.force_flush()


def traced_here() -> bool:
    """Whether this serving process traces: its runners then ask their workers and replicas to."""
    return trace is not None and isinstance(trace.get_tracer_provider(), ServerTracerProvider)


def trace_in_replica() -> None:
    """In a worker process or Ray replica of a server that traces: keep spans to ship back."""
    trace.set_tracer_provider(ReplicaTracerProvider())


def finished_here() -> list:
    """The spans this worker or replica finished since it was last asked."""
    provider = trace.get_tracer_provider() if trace is not None else None
    return provider.drain() if isinstance(provider, ReplicaTracerProvider) else []


def take(spans: list) -> None:
    """Spans a worker or replica shipped back: exported as the server's own."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, ServerTracerProvider):
        provider.take(spans)


def start_request(tracer: "trace.Tracer", protocol: str, headers: Optional[Mapping[str, str]]) -> "trace.Span":
    """The request's server span, a child of the client's ``traceparent`` when its headers carry one."""
    parent = propagate.extract(headers) if headers is not None else None
    return tracer.start_span(REQUEST_SPANS[protocol], parent, SpanKind.SERVER, {"modelhost.protocol": protocol})


def carry(span: "trace.Span", request: "InferenceRequest") -> None:
    """Put the request span's context on the request, for the stages wherever the model runs."""
    if request.verb == "explain":
        span.update_name(EXPLAIN_SPAN)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, trace.set_span_in_context(span))
    request.trace_context = carrier


def end_request(span: "trace.Span", status: int, model: str, version: Optional[str], request_id: str) -> None:
    span.set_attributes({"modelhost.model": model, "modelhost.status": status, "modelhost.request_id": request_id,
                         **({"modelhost.model_version": version} if version else {})})
    if status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()


@contextlib.contextmanager
def stage(hook: str, model: str, requests: list["InferenceRequest"]) -> Iterator[None]:
    """A hook's span for these requests, current while it runs: the first request's child, linked to the others'
    (a batch's predict is one call for all of them)."""
    contexts = [propagate.extract(request.trace_context) for request in requests if request.trace_context]
    links = [Link(trace.get_current_span(context).get_span_context()) for context in contexts[1:]]
    attributes: dict[str, Any] = {"modelhost.model": model, "modelhost.batch_size": len(requests),
                                  "modelhost.request_id": requests[0].request_id}
    with _tracer().start_as_current_span(hook, contexts[0], links=links, attributes=attributes):
        yield


def queued(request: "InferenceRequest", model: str, submitted: float, taken: float, batch_size: int) -> None:
    """The time the request waited for its batch (``perf_counter`` seconds), as a span after the fact."""
    now_ns, now = time.time_ns(), time.perf_counter()
    span = _tracer().start_span("queue", propagate.extract(request.trace_context),
                                attributes={"modelhost.model": model, "modelhost.batch_size": batch_size},
                                start_time=now_ns - int((now - submitted) * 1e9))
    span.end(now_ns - int((now - taken) * 1e9))


def predictor_call(headers: dict[str, str], address: str, model: str) -> Any:
    """The transformer's call to its predictor as a client span, its ``traceparent`` put into ``headers``;
    nothing when the call is not part of a traced request."""
    if trace is None or not trace.get_current_span().is_recording():
        return NO_SPAN
    return _predictor_span(headers, address, model)


@contextlib.contextmanager
def _predictor_span(headers: dict[str, str], address: str, model: str) -> Iterator[None]:
    with _tracer().start_as_current_span("predictor", kind=SpanKind.CLIENT,
                                         attributes={"server.address": address, "modelhost.model": model}):
        propagate.inject(headers)
        yield


@lru_cache(maxsize=1)
def _tracer() -> "trace.Tracer":
    # The global provider's: the server's, a worker's or a replica's. Made once; OpenTelemetry's proxy follows
    # the provider installed after it.
    return trace.get_tracer(SCOPE, __version__)


"""Spans finished where a model runs apart from the server (a worker process, a Ray replica), shipped back to it.

A worker or replica exports nothing: its provider (``ReplicaTracerProvider``)
keeps the spans it finishes, the batch's ``Outcomes`` carry them back as
plain ``ShippedSpan`` values (the SDK's spans hold locks, and pickle badly),
and the server's provider (``ServerTracerProvider``) hands them to its
exporters with its own. So only the server needs to reach the collector, and
a test's in-memory exporter sees a worker's spans as the server's.
"""

import threading
from dataclasses import dataclass
from typing import Any, Optional

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState


@dataclass(frozen=True)
class ShippedEvent:
    name: str
    timestamp: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ShippedLink:
    trace_id: int
    span_id: int
    trace_flags: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ShippedSpan:
    """A finished span as plain values: what the SDK's ``ReadableSpan`` holds, but its resource."""

    name: str
    trace_id: int
    span_id: int
    trace_flags: int
    trace_state: str
    parent_span_id: Optional[int]
    parent_is_remote: bool
    kind: str
    start_time: int
    end_time: int
    attributes: dict[str, Any]
    events: list[ShippedEvent]
    links: list[ShippedLink]
    status: str
    status_description: Optional[str]
    scope: str
    scope_version: Optional[str]


def shipped(span: ReadableSpan) -> ShippedSpan:
    context, parent, scope = span.get_span_context(), span.parent, span.instrumentation_scope
    assert context is not None and span.start_time is not None and span.end_time is not None  # finished spans
    return ShippedSpan(
        name=span.name, trace_id=context.trace_id, span_id=context.span_id, trace_flags=context.trace_flags,
        trace_state=context.trace_state.to_header(), parent_span_id=parent.span_id if parent else None,
        parent_is_remote=bool(parent and parent.is_remote), kind=span.kind.name, start_time=span.start_time,
        end_time=span.end_time, attributes=dict(span.attributes or {}),
        events=[ShippedEvent(event.name, event.timestamp, dict(event.attributes or {})) for event in span.events],
        links=[ShippedLink(link.context.trace_id, link.context.span_id, link.context.trace_flags,
                           dict(link.attributes or {})) for link in span.links],
        status=span.status.status_code.name, status_description=span.status.description,
        scope=scope.name if scope else "", scope_version=scope.version if scope else None,
    )


def readable(span: ShippedSpan, resource: Resource) -> ReadableSpan:
    flags = TraceFlags(span.trace_flags)
    parent = None if span.parent_span_id is None else SpanContext(
        span.trace_id, span.parent_span_id, span.parent_is_remote, flags)
    return ReadableSpan(
        name=span.name,
        context=SpanContext(span.trace_id, span.span_id, False, flags, TraceState.from_header([span.trace_state])),
        parent=parent, resource=resource, attributes=span.attributes,
        events=[Event(event.name, event.attributes, event.timestamp) for event in span.events],
        links=[Link(SpanContext(link.trace_id, link.span_id, True, TraceFlags(link.trace_flags)), link.attributes)
               for link in span.links],
        kind=SpanKind[span.kind], status=Status(StatusCode[span.status], span.status_description),
        start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=InstrumentationScope(span.scope, span.scope_version),
    )


class ReplicaTracerProvider(TracerProvider):
    """A worker's or replica's provider: it keeps what it finishes until ``drain`` hands it over."""

    def __init__(self):
        super().__init__()
        self.keeper = Keeper()
        self.add_span_processor(self.keeper)

    def drain(self) -> list[ShippedSpan]:
        with self.keeper.lock:
            spans, self.keeper.finished = self.keeper.finished, []
        return spans


class Keeper(SpanProcessor):
    def __init__(self):
        self.lock = threading.Lock()  # spans end on hook threads while a batch's outcomes are sent
        self.finished: list[ShippedSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        kept = shipped(span)
        with self.lock:
            self.finished.append(kept)


class ServerTracerProvider(TracerProvider):
    """The server's provider: its own spans and those shipped back to it go to ``processors``."""

    def __init__(self, processors: list[SpanProcessor], resource: Resource):
        self.exporting = SynchronousMultiSpanProcessor()
        super().__init__(resource=resource, active_span_processor=self.exporting)
        for processor in processors:
            self.add_span_processor(processor)

    def take(self, spans: list[ShippedSpan]) -> None:
        for span in spans:
            self.exporting.on_end(readable(span, self.resource))

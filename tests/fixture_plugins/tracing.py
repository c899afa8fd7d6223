"""Plugins that look at traces: one whose predict has a span of its own, one that says whether it was traced."""

import numpy as np
from opentelemetry import trace

from modelhost import hookimpl


class TracedWork:
    """Doubles its inputs inside a span of its own, which should nest under the host's predict span."""

    @hookimpl
    def predict(self, inputs):
        with trace.get_tracer("fixture_plugins.tracing").start_as_current_span("plugin-work") as span:
            if isinstance(inputs, dict):  # V2: the tensors by name
                return {name: array * 2 for name, array in inputs.items()}
            span.set_attribute("rows", len(inputs))
            return np.asarray(inputs) * 2


class SeesTraceContext:
    """Answers, per instance, whether its request carried a trace context."""

    @hookimpl
    def preprocess(self, request):
        return np.full(len(request.instances), request.trace_context is not None)

    @hookimpl
    def predict(self, inputs):
        return inputs

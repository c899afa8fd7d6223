"""Plugins the benchmarks serve by import path."""

import time

import numpy as np

from modelhost import hookimpl


class Burn:
    """CPU-bound in pure Python (one core per request, whatever the BLAS): about 40 ms a request."""

    @hookimpl
    def predict(self, inputs):
        total = 0
        for value in range(800_000):
            total += value * value
        return np.full(len(inputs), total % 7)


class Nothing:
    """Answers one zero whatever it gets: what a request costs the host, the model aside."""

    @hookimpl
    def predict(self, inputs):
        return np.zeros((1, 1), dtype=np.float32)


class Identity:
    """Answers each request with its own inputs, on a hook thread (plugins/echo's runs on the event loop), after
    waiting the request's ``wait_ms`` parameter (none by default): a request as long as another, without its work."""

    @hookimpl
    def preprocess(self, request):
        time.sleep(request.parameters.get("wait_ms", 0) / 1000)
        return request.inputs

    @hookimpl
    def predict(self, inputs):
        return inputs

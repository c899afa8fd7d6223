"""Plugins that show how requests were batched: each row answers with the rows of its predict call."""

import numpy as np

from modelhost import InvalidInput, hookimpl


class Batches:
    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v2":
            return request.inputs
        if "bad" in request.instances:
            raise InvalidInput("'bad' cannot be batched")
        return np.asarray(request.instances, dtype=np.float64)

    @hookimpl
    def predict(self, inputs):
        rows = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)
        if isinstance(inputs, dict):
            return {**{name: value * 10 for name, value in inputs.items()}, "rows_in_batch": np.full(rows, rows)}
        return {"y": inputs * 10, "rows_in_batch": np.full(rows, rows)}


class BatchesByDefault(Batches):
    """Asks for batching in its settings, with a wide window so that concurrent requests meet."""

    @hookimpl
    def settings(self):
        return {"max_batch_size": 16, "max_batch_wait_ms": 2000}


class MiscountsRows(Batches):
    @hookimpl
    def predict(self, inputs):
        return inputs[:1]

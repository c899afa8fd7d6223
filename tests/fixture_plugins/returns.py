"""Plugins that return what a response cannot carry, or rows that do not match their inputs."""

import numpy as np

from modelhost import hookimpl

# What Returns' postprocess answers, by the request's 'give' parameter.
RESULTS = {
    "set": lambda: {1, 2, 3},
    "mixed-table": lambda: {"table": np.array([[1, "a"], [2.5, None]], dtype=object)},
    "object": lambda: {"thing": object()},
    "unequal-columns": lambda: {"a": np.arange(3), "b": np.ones((2, 2))},
    "not-finite": lambda: np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32),
}


class Returns:
    @hookimpl
    def predict(self, inputs):
        return inputs

    @hookimpl
    def postprocess(self, outputs, request):
        return RESULTS[request.parameters["give"]]()


class DropsARow:
    """Its predict answers one row fewer than it was given."""

    @hookimpl
    def predict(self, inputs):
        if isinstance(inputs, dict):
            return {name: array[1:] for name, array in inputs.items()}
        return inputs[1:]

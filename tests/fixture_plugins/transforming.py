"""Plugins for the transformer role (``--predictor_host``): they pre- and post-process, the predictor predicts."""

import time

import numpy as np

from modelhost import InvalidInput, hookimpl


class PlusOne:
    """Adds one to every input before the predictor sees it, and says so in the answer's outputs."""

    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v1":
            return np.asarray(request.instances) + 1
        return {name: array + 1 for name, array in request.inputs.items()}

    @hookimpl
    def postprocess(self, outputs):
        return outputs


class AsksTwice:
    """Its own predict calls the predictor twice, through the client the host gives it, and adds the answers."""

    @hookimpl
    async def predict(self, inputs, predictor):
        first = await predictor.infer(inputs)
        second = await predictor.infer(inputs)
        if isinstance(first, dict):
            return {name: first[name] + second[name] for name in first}
        return first + second


class Judging:
    """A predictor that doubles its inputs, but answers 400 for a negative one, raises for 13 and takes 5 s over 7."""

    @hookimpl
    def predict(self, inputs):
        arrays = inputs if isinstance(inputs, dict) else {"": inputs}
        values = np.concatenate([np.ravel(array) for array in arrays.values()])
        if (values < 0).any():
            raise InvalidInput("negative inputs")
        if (values == 13).any():
            raise RuntimeError("unlucky")
        if (values == 7).any():
            time.sleep(5)
        return {name: array * 2 for name, array in inputs.items()} if isinstance(inputs, dict) else inputs * 2


class Relays:
    """A transformer of a generating predictor: each piece it passes through marked ``<...>`` by its postprocess."""

    @hookimpl
    def postprocess(self, outputs):
        return {name: np.array([b"<" + bytes(value) + b">" for value in array.ravel()], dtype=object)
                for name, array in outputs.items()}

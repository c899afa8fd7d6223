"""Plugins that keep the contract, each showing one part of it."""

import logging
import os
import threading
import time

import numpy as np

from modelhost import InvalidInput, Response, hookimpl


class Doubler:
    """Only predict: the host's defaults do the rest."""

    @hookimpl
    def predict(self, inputs):
        if isinstance(inputs, dict):
            return {name: array * 2 for name, array in inputs.items()}
        return inputs * 2


class DoublesInPlace:
    """Works on its input tensors in place: they are its own, and writable, wherever it runs."""

    @hookimpl
    def predict(self, inputs):
        for array in inputs.values():
            array *= 2
        return inputs


class Declared:
    """Declares its version and tensors; returns a bare array that is served under the declared output's name."""

    @hookimpl
    def metadata(self):
        return {
            "versions": ["7"],
            "platform": "numpy",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1]}],
        }

    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v1":
            return np.asarray(request.instances, dtype=np.float32)
        return request.inputs["x"]

    @hookimpl
    def predict(self, inputs):
        return inputs.sum(axis=1)


class Picky:
    """Raises InvalidInput on instances it rejects, and a plain error on 'boom'."""

    @hookimpl
    def preprocess(self, request):
        if "bad" in request.instances:
            raise InvalidInput("'bad' is not an instance this model takes")
        return request.instances

    @hookimpl
    def predict(self, inputs):
        if "boom" in inputs:
            raise RuntimeError("the model blew up")
        return inputs


class Gate:
    """Holds predict until the file named by the request's 'release' parameter exists.

    It creates the 'started' file first, so a test knows predict is running
    without timing anything. Bounded at 60 s so a broken test cannot hang.
    """

    @hookimpl
    def predict(self, inputs):
        return inputs

    @hookimpl
    def postprocess(self, outputs, request):
        open(request.parameters["started"], "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(request.parameters["release"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return outputs


class Complex:
    """Returns what the protocols cannot carry."""

    @hookimpl
    def predict(self, inputs):
        return np.ones(len(inputs), dtype=np.complex64)


class Counter:
    """Counts load calls: the host must call load once per serving process."""

    loads = 0

    @hookimpl
    def load(self, name):
        Counter.loads += 1
        self.pid = os.getpid()

    @hookimpl
    def predict(self, inputs):
        return np.full(len(inputs), self.pid)


class ThreadName:
    """Answers each instance with the name of the thread its predict ran on."""

    @hookimpl
    def predict(self, inputs):
        return [threading.current_thread().name] * len(inputs)


class InlineThreadName(ThreadName):
    """The same, asking to run on the event loop."""

    @hookimpl
    def settings(self):
        return {"inline": True}


class Talks:
    """Logs a line from its predict, as a plugin author would."""

    @hookimpl
    def predict(self, inputs):
        logging.getLogger("talks").info("predicting %d instances", len(inputs))
        return inputs


class Explains:
    """Predicts twice its inputs and explains each prediction as ten times them; postprocess sees which."""

    @hookimpl
    def predict(self, inputs):
        return inputs * 2

    @hookimpl
    def explain(self, inputs):
        return inputs * 10

    @hookimpl
    def postprocess(self, outputs, request):
        return {"value": outputs, "verb": [request.verb] * len(outputs)}


class ReadsHeaders:
    """Answers with the value of the request's X-Hint header, which it reads by its lower-cased name."""

    @hookimpl
    def predict(self, inputs):
        return inputs

    @hookimpl
    def postprocess(self, outputs, request):
        hint = request.headers.get("x-hint", "none")
        return [hint] * len(outputs) if request.protocol == "v1" else {"hint": np.array([hint] * len(outputs))}


class Parameters:
    """Answers with its request's parameters as the response's, a parameter on each output, and a header;
    or, asked with the 'bad_header' parameter, with a header HTTP cannot carry."""

    @hookimpl
    def predict(self, inputs):
        return inputs

    @hookimpl
    def postprocess(self, outputs, request):
        if "bad_header" in request.parameters:
            return Response(outputs, headers={"X-Note": "two\r\nlines"})
        own = {name: {"unit": "m", "index": index} for index, name in enumerate(outputs)} \
            if isinstance(outputs, dict) else {}
        return Response(outputs, parameters=dict(request.parameters), output_parameters=own,
                        headers={"X-Model-Note": "echoed"})

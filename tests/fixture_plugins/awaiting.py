"""Plugins with ``async def`` hooks, and ones the host must refuse to serve."""

import asyncio
import logging
import os

import numpy as np
from tornado.httpclient import AsyncHTTPClient

from modelhost import hookimpl


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class AsksPeer:
    """An async predict that awaits an HTTP call to another server, named by $MODELHOST_TEST_PEER."""

    @hookimpl
    async def predict(self, inputs):
        answer = await AsyncHTTPClient().fetch(os.environ["MODELHOST_TEST_PEER"], request_timeout=60)
        return np.array([answer.body.decode()] * len(inputs), dtype=object)


class Rendezvous:
    """Each request waits inside predict until $MODELHOST_TEST_PARTIES requests are in predict at once, for at
    most $MODELHOST_TEST_RENDEZVOUS_S seconds."""

    def __init__(self):
        self.barrier = None

    @hookimpl
    async def load(self):
        self.barrier = asyncio.Barrier(int(os.environ["MODELHOST_TEST_PARTIES"]))

    @hookimpl
    async def predict(self, inputs):
        arrived = await asyncio.wait_for(self.barrier.wait(), float(os.environ["MODELHOST_TEST_RENDEZVOUS_S"]))
        return np.full(len(inputs), arrived)


class Mixed:
    """Sync pre- and postprocess around an async predict, each saying whether it ran on the event loop."""

    @hookimpl
    def preprocess(self, request):
        logging.getLogger("mixed").warning("preprocess ran on a thread")
        return {"x": request.inputs["x"], "preprocess_on_loop": np.full(len(request.inputs["x"]), on_event_loop())}

    @hookimpl
    async def predict(self, inputs):
        await asyncio.sleep(0)
        return {**inputs, "predict_on_loop": np.full(len(inputs["x"]), on_event_loop())}

    @hookimpl
    def postprocess(self, outputs):
        return {**outputs, "postprocess_on_loop": np.full(len(outputs["x"]), on_event_loop())}


class InlineMixed(Mixed):
    @hookimpl
    def settings(self):
        return {"inline": True}


class BatchesAwaiting:
    """An async predict under adaptive batching: each row answers with the rows of its predict call."""

    @hookimpl
    def settings(self):
        return {"max_batch_size": 16, "max_batch_wait_ms": 2000}

    @hookimpl
    async def predict(self, inputs):
        await asyncio.sleep(0.01)
        return {"y": inputs * 10, "rows_in_batch": np.full(len(inputs), len(inputs))}


class RaisesAwaiting:
    @hookimpl
    async def predict(self, inputs):
        await asyncio.sleep(0)
        raise RuntimeError("the model blew up")


class RaisesSync:
    @hookimpl
    def predict(self, inputs):
        raise RuntimeError("the model blew up")


class AwaitsEverything:
    """Every hook async: the whole lifecycle, awaited."""

    def __init__(self):
        self.loaded = False

    @hookimpl
    async def settings(self):
        return {"max_queue_size": 100}

    @hookimpl
    async def load(self):
        await asyncio.sleep(0)
        self.loaded = True

    @hookimpl
    async def metadata(self):
        return {"outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}]}

    @hookimpl
    async def preprocess(self, request):
        return np.asarray(request.instances if request.protocol == "v1" else request.inputs["x"], dtype=np.float64)

    @hookimpl
    async def predict(self, inputs):
        assert self.loaded
        return inputs + 1

    @hookimpl
    async def explain(self, inputs):
        return inputs * 0

    @hookimpl
    async def postprocess(self, outputs):
        return outputs

    @hookimpl
    async def healthy(self):
        return True

    @hookimpl
    async def unload(self):
        self.loaded = False


class AsyncGenerator:
    @hookimpl
    async def predict(self, inputs):
        yield inputs


class Generator:
    @hookimpl
    def predict(self, inputs):
        yield inputs


class AsyncWrapper:
    @hookimpl(wrapper=True, specname="predict")
    def wrap_predict(self, inputs):
        return (yield)

    @hookimpl
    async def predict(self, inputs):
        return inputs


class NamesItsLoop:
    """An async predict that answers with the kind of event loop it runs on, for each input."""

    @hookimpl
    async def predict(self, inputs):
        kind = type(asyncio.get_running_loop()).__module__.split(".")[0]
        return np.array([kind] * len(inputs), dtype=object)

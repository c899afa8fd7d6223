"""Echo-like plugins whose answer grows with the request: one output per input, for the worker channel's tests."""

import asyncio

from modelhost import hookimpl


class AwaitingDoubler:
    """behaving.Doubler with an ``async def`` predict: its worker answers from an event loop (AsyncChannel)."""

    @hookimpl
    async def predict(self, inputs):
        await asyncio.sleep(0)
        return {name: array * 2 for name, array in inputs.items()}

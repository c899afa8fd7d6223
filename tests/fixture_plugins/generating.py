"""Plugins that generate: fixed pieces, counted steps, errors part-way, and a record of closed generators."""

import asyncio
import contextlib
import os
import time

import numpy as np

from modelhost import Piece, hookimpl


def record(event: str) -> None:
    """Write an event to the file the test names (``GENERATING_RECORD``): seen from any process."""
    path = os.environ.get("GENERATING_RECORD")
    if path:
        with open(path, "a") as file:
            file.write(event + "\n")


def options(request) -> dict:
    generation = request.generation
    if generation is not None:
        return {"count": generation.max_tokens or 5, "prompt": generation.prompt or generation.messages[-1]["content"]}
    text = request.inputs.get("text_input", np.array([b"hello"], dtype=object))[0]
    return {"count": int(request.parameters.get("count", 5)), "prompt": text.decode() if isinstance(text, bytes) else text}


class Words:
    """Yields "word0 ", "word1 ", ... as many as asked (max_tokens, or parameter count), then ends."""

    @hookimpl
    def generate(self, request):
        asked = options(request)
        record("start " + asked["prompt"])
        try:
            for index in range(asked["count"]):
                delay = request.parameters.get("delay") if request.generation is None else None
                if delay:
                    time.sleep(float(delay))
                yield Piece(f"word{index} ", prompt_tokens=len(asked["prompt"].split())) if index == 0 else f"word{index} "
                record(f"yielded {index}")
        finally:
            record("closed " + asked["prompt"])

    @hookimpl
    def embed(self, texts):
        return np.array([[len(text), text.count(" "), 1.0, 0.0] for text in texts], dtype=np.float32)


class Wide:
    """Words with wide pieces: each "wordN " padded with dots to parameter width (default 65536) characters, so
    that a slow client's kernel socket buffers hold a few dozen of them, not thousands as of Words' small ones."""

    @hookimpl
    def generate(self, request):
        asked = options(request)
        width = int(request.parameters.get("width", 65536))
        record("start " + asked["prompt"])
        try:
            for index in range(asked["count"]):
                yield f"word{index} ".ljust(width, ".")
                record(f"yielded {index}")
        finally:
            record("closed " + asked["prompt"])


class AsyncWords:
    """Words, from an async generator that sleeps between pieces (parameter delay)."""

    @hookimpl
    async def generate(self, request):
        delay = float(request.parameters.get("delay", 0))
        async with contextlib.aclosing(paced(request, lambda index: delay)) as pieces:
            async for piece in pieces:
                yield piece


class Stalls:
    """Yields "word0 " at once, then waits parameter stall seconds (default 20) before each next piece: a client
    that leaves meanwhile must be noticed without a piece to write."""

    @hookimpl
    async def generate(self, request):
        stall = float(request.parameters.get("stall", 20))
        async with contextlib.aclosing(paced(request, lambda index: stall if index else 0)) as pieces:
            async for piece in pieces:
                yield piece


async def paced(request, pause):
    """Words as asked, each after ``pause(index)`` seconds, recorded as Words records them."""
    asked = options(request)
    record("start " + asked["prompt"])
    try:
        for index in range(asked["count"]):
            await asyncio.sleep(pause(index))
            yield f"word{index} "
    finally:
        record("closed " + asked["prompt"])


class Failing:
    """Yields two pieces, then raises."""

    @hookimpl
    def generate(self, request):
        yield "one "
        yield "two "
        raise RuntimeError("the generator broke")


class Repeat:
    """Triton's repeat_int32 example model: one response per element of IN, with OUT and IDX."""

    @hookimpl
    def metadata(self):
        return {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [-1]},
                           {"name": "DELAY", "datatype": "UINT32", "shape": [-1]},
                           {"name": "WAIT", "datatype": "UINT32", "shape": [1]}],
                "outputs": [{"name": "OUT", "datatype": "INT32", "shape": [1]},
                            {"name": "IDX", "datatype": "UINT32", "shape": [1]}]}

    @hookimpl
    def generate(self, inputs):
        values = inputs["IN"].reshape(-1)
        delays = inputs.get("DELAY", np.zeros(len(values), dtype=np.uint32)).reshape(-1)
        for index, value in enumerate(values):
            time.sleep(int(delays[index]) / 1000 if index < len(delays) else 0)
            yield {"OUT": np.array([value], dtype=np.int32), "IDX": np.array([index], dtype=np.uint32)}


class Embedder:
    """Unit vectors of 4 components whose first ones stand alone (as a Matryoshka-trained model's): shortenable."""

    @hookimpl
    def metadata(self):
        return {"embeddings": {"shortenable": True}}

    @hookimpl
    def embed(self, texts):
        vectors = np.array([[len(text), 1.0, 2.0, 3.0] for text in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

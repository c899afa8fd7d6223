"""One request's generation, where the model runs: the plugin's ``generate`` read piece by piece.

Written once, as a coroutine, for every runner: the server process, a worker
process and a Ray replica each run ``generate`` and say where each part goes
(``emit``, which waits while the client is behind). A synchronous generator's
steps go through the model's ``offload`` (a thread) unless it runs inline; an
async one is awaited. However the generation ends (its end, the host's
``max_tokens`` or ``stop``, an error, the client leaving, which cancels the
coroutine) the generator is closed, so that the plugin's ``finally`` runs here.

Each piece leaves as a ``Part`` in its protocol's form: text for an
OpenAI-compatible request, V2 output tensors otherwise. An OpenAI request's
choices each end with a part that carries its ``finish_reason``. A model that
steps (``begin`` and ``step``) is read alike: each choice a sequence of its
scheduler (``sequences.py``), stepped with the others.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Union

import numpy as np

from . import tracing
from .errors import NotImplementedByModel, PluginError
from .hookcallers import Offload
from .model import OWN, Model, Own
from .sequences import Sequence
from .stepping import END, Source, Stepper
from .protocol.openai_responses import FinishReason, StopScanner
from .request import InferenceRequest, Piece

# A text piece answering a V2 request is this output, as Triton's generate extension names it.
TEXT_OUTPUT = "text_output"


@dataclass(frozen=True)
class Part:
    """A piece as it leaves the model's process: ``outputs`` is text (OpenAI) or what ``Model.respond`` made of
    V2 output tensors; ``finish_reason`` is set on an OpenAI choice's last part."""

    outputs: Any
    choice: int = 0
    tokens: int = 1
    prompt_tokens: Optional[int] = None
    finish_reason: Optional[FinishReason] = None


Emit = Callable[[Part], Awaitable[None]]


async def generate(model: Model, request: InferenceRequest, emit: Emit,
                   offload: Union[Offload, None, Own] = OWN) -> None:
    """Run the request's generation to its end, each part handed to ``emit``; an error raises (ModelhostError).

    ``offload``: how the model's synchronous hooks leave the event loop (``OWN``: as its batches' do).
    """
    if "generate" not in model.verbs:
        raise NotImplementedByModel(f"model {model.name!r} does not generate (it has no generate hook)")
    offload = model.offload if offload is OWN else offload
    inputs = await model.prepare(request, offload)
    choices = request.generation.n if request.generation else 1
    started = time.perf_counter()
    try:
        # A span for the whole generation, where it runs: its pieces are too many to trace one by one.
        with tracing.stage("generate", model.name, [request]) if request.trace_context else tracing.NO_SPAN:
            for choice in range(choices):
                await one_choice(Stepper(model, offload), request, inputs, choice, emit)
    finally:
        request.timings["generate"] = time.perf_counter() - started


async def one_choice(stepper: "Stepper", request: InferenceRequest, inputs: Any, choice: int, emit: Emit) -> None:
    model, generation = stepper.model, request.generation
    source: Union[Source, Sequence] = (model.scheduler.join(inputs, request) if model.scheduler is not None
                                       else Source(stepper, await stepper.call("generate", inputs=inputs, request=request)))
    scanner = StopScanner(generation.stop) if generation and generation.stop else None
    limit = generation.max_tokens if generation else None
    produced, stopped, emitted = 0, False, 0
    finish: FinishReason = "stop"
    try:
        while True:
            piece = await source.next()
            if piece is END:
                break
            if "postprocess" in model.hooks:
                piece = await stepper.call("postprocess", outputs=piece, request=request)
            part = carried(model, piece, request, choice)
            produced += part.tokens
            if scanner is not None:
                text, stopped = scanner.feed(part.outputs)
                part = Part(text, choice, part.tokens, part.prompt_tokens)
            if part.outputs or part.prompt_tokens is not None or generation is None:
                await emit(part)
                emitted += 1
                if emitted == 1:
                    # The first piece leaves before the next step: a generator that never awaits would make a
                    # window's worth of pieces first. Later ones go out in the writes the window batches.
                    await asyncio.sleep(0)
            if stopped:
                break
            if limit is not None and produced >= limit:
                finish = "length"
                break
    finally:
        await source.close()
    if generation is not None:
        held = scanner.flush() if scanner is not None and not stopped else ""
        await emit(Part(held, choice, 0, None, finish))


def carried(model: Model, piece: Any, request: InferenceRequest, choice: int) -> Part:
    """The piece in its protocol's form; PluginError names what cannot be carried."""
    text: Union[str, bytes]
    if isinstance(piece, Piece):
        text, tokens, prompt_tokens = piece.text, piece.tokens, piece.prompt_tokens
    elif isinstance(piece, (str, bytes)):
        text, tokens, prompt_tokens = piece, 1, None
    elif request.generation is None:
        return Part(model.respond(piece, request), choice)
    else:
        raise PluginError(f"model {model.name!r}: generate yielded a {type(piece).__name__}, where an "
                          "OpenAI-compatible request takes text (str or modelhost.Piece)")
    if request.generation is not None:
        return Part(text if isinstance(text, str) else text.decode("utf-8", "replace"), choice, tokens, prompt_tokens)
    encoded = text.encode("utf-8") if isinstance(text, str) else text
    outputs = {TEXT_OUTPUT: np.array([encoded], dtype=object)}
    # Already the tensors respond would make of it: of respond's work, a piece needs only the comparison with the
    # metadata, and respond only where that finds a difference, to log it.
    if model.compared_outputs is not None and model.compared_outputs.difference(outputs):
        return Part(model.respond(outputs, request), choice, tokens)
    return Part(outputs, choice, tokens)

"""tiny-gpt served: text generation on the OpenAI-compatible routes and V2 generate, and embeddings.

An OpenAI completion's ``prompt``, a chat's messages in a plain template
ending with an assistant cue, or a V2 request's ``text_input`` (BYTES [1])
is tokenized in ``preprocess`` with the sampling options checked. ``TinyGPT``
(the entry point) generates with continuous batching: ``begin`` reads a prompt
into its KV cache, and each ``step`` advances every active sequence a token in
one batched pass, each answer a piece at a time as ``modelhost.Piece`` (the
prompt's token count on the first piece). ``TinyGPTGenerator`` generates the
same answers one sequence at a time through ``generate``. ``embed`` averages
the final hidden states of each text.
"""

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

import numpy as np

from modelhost import END, InferenceRequest, InvalidInput, Piece, hookimpl
from modelhost.protocol.declared import DeclaredInputs

from .generation import Decoding, pieces, prompt_ids, step_all
from .network import Network, kv_bytes, load_network
from .weights import Config
from .tokenizer import Codec, load_tokenizer

DEFAULT_MAX_TOKENS = 64
METADATA = {
    "platform": "numpy",
    "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
    "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}],
}
CHECKED_INPUTS = DeclaredInputs.of(METADATA)


@dataclass(frozen=True)
class Prompt:
    """What ``preprocess`` hands ``generate``: the prompt's tokens and the checked sampling options."""

    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: Optional[int]


class TinyGPTModel:
    """What both ways of generating share: the network and tokenizer, the prompt, and embeddings."""

    network: Network
    codec: Codec

    @hookimpl
    def load(self) -> None:
        self.codec = load_tokenizer()
        self.network = load_network(self.codec.vocab_size)

    @hookimpl
    def metadata(self) -> dict[str, Any]:
        return METADATA

    @hookimpl
    def settings(self) -> dict[str, Any]:
        # Generations one process runs at once: the host's default, said here because each holds its place for
        # its whole answer. With steps, at most max_batch_size of them advance together and the rest queue, as
        # many as fit in the budget at a full context's KV cache each (of the shipped weights' shape: settings
        # are asked before load reads the weights).
        return {"max_concurrency": 64, "max_batch_size": 32, "sequence_memory": kv_bytes(Config()),
                "memory_budget": 32 * kv_bytes(Config())}

    @hookimpl
    def preprocess(self, request: InferenceRequest) -> Union[Prompt, list[str]]:
        if request.verb == "embed":  # the embeddings route's texts, passed on to embed as the host's default does
            return list(request.instances or [])
        if request.generation is not None:
            generation = request.generation
            text = chat_prompt(generation.messages) if generation.route == "chat/completions" else generation.prompt
            options = {"max_tokens": generation.max_tokens, "temperature": generation.temperature,
                       "top_p": generation.top_p, "seed": generation.seed}
        elif request.protocol == "v2":
            text, options = v2_text(request.inputs), request.parameters
        else:
            raise InvalidInput("tiny-gpt generates text: send an OpenAI-compatible request or V2 'text_input'")
        return self.prompt(text or "", options)

    def prompt(self, text: str, options: dict[str, Any]) -> Prompt:
        max_tokens = option(options, "max_tokens", int, DEFAULT_MAX_TOKENS, 1, None, "a positive integer")
        temperature = float(option(options, "temperature", float, 1.0, 0, 2, "a number from 0 to 2"))
        top_p = float(option(options, "top_p", float, 1.0, 0, 1, "a number from 0 to 1"))
        seed = option(options, "seed", int, None, None, None, "an integer")
        ids = prompt_ids(self.codec, text)
        room = self.network.config.context - len(ids)
        if room < 1:
            raise InvalidInput(f"the prompt is {len(ids)} tokens; tiny-gpt's context holds "
                               f"{self.network.config.context}, the answer included")
        return Prompt(ids, min(max_tokens, room), temperature, top_p, seed)

    @hookimpl
    def embed(self, texts: list[str]) -> np.ndarray:
        """[N, d_model] unit vectors; a text longer than the context is embedded by its first tokens."""
        context = self.network.config.context
        return self.network.embed([prompt_ids(self.codec, text)[:context] for text in texts])


class TinyGPT(TinyGPTModel):
    """tiny-gpt with continuous batching: every active sequence advanced a token in one batched pass a step."""

    @hookimpl
    def begin(self, inputs: Prompt, request: InferenceRequest) -> "Sequence":
        decoding = Decoding.begin(self.network, self.codec, inputs.ids, inputs.max_tokens, inputs.temperature,
                                  inputs.top_p, inputs.seed)
        return Sequence(decoding, len(inputs.ids))

    @hookimpl
    def step(self, states: list["Sequence"]) -> list[Any]:
        made = step_all(self.network, self.codec, [state.decoding for state in states])
        return [state.piece(piece) for state, piece in zip(states, made)]


@dataclass(eq=False)
class Sequence:
    """A sequence's state between steps; the prompt's token count goes with its first piece (the usage)."""

    decoding: Decoding
    prompt_tokens: Optional[int]

    def piece(self, made: Optional[tuple[str, int]]) -> Any:
        if made is None:
            return END
        text, count = made
        if not (text or count):  # nothing whole this step; an answer that ends empty still says its prompt's size
            if not self.decoding.ended:
                return None
            if self.prompt_tokens is None:
                return END
        piece = Piece(text, tokens=count, prompt_tokens=self.prompt_tokens)
        self.prompt_tokens = None
        return piece


class TinyGPTGenerator(TinyGPTModel):
    """tiny-gpt one sequence at a time, through the generate hook: what continuous batching is measured against."""

    @hookimpl
    def generate(self, inputs: Prompt, request: InferenceRequest) -> Iterator[Piece]:
        prompt_tokens: Optional[int] = len(inputs.ids)
        for text, count in pieces(self.network, self.codec, inputs.ids, inputs.max_tokens, inputs.temperature,
                                  inputs.top_p, inputs.seed):
            yield Piece(text, tokens=count, prompt_tokens=prompt_tokens)
            prompt_tokens = None
        if prompt_tokens is not None:  # the end token came first: the answer is empty, the usage still counts
            yield Piece("", tokens=0, prompt_tokens=prompt_tokens)


def chat_prompt(messages: Optional[list[dict[str, str]]]) -> str:
    """A plain chat template, "Role: content" a line each, then "Assistant:" for the model to go on from."""
    lines = []
    for index, message in enumerate(messages or []):
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise InvalidInput(f"message {index}: 'role' and 'content' must be text")
        lines.append(f"{role.capitalize()}: {content}")
    return "\n".join([*lines, "Assistant:"])


def v2_text(inputs: dict[str, np.ndarray]) -> str:
    if "text_input" not in inputs:
        raise InvalidInput("input 'text_input' is required: the prompt, as BYTES of shape [1]")
    assert CHECKED_INPUTS is not None
    CHECKED_INPUTS.check(inputs)
    value = inputs["text_input"].reshape(-1)[0]
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError):
        raise InvalidInput("input 'text_input' is not UTF-8 text") from None


def option(options: dict[str, Any], name: str, kind: type, default: Any, low: Optional[float],
           high: Optional[float], expected: str) -> Any:
    """``options[name]`` (None or absent: ``default``), checked; InvalidInput names it and what it takes."""
    value = options.get(name)
    if value is None:
        return default
    # bool is an int to Python, and an integral float (JSON's 3.0) is no integer to a client's eye either.
    fits = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if fits and kind is float:
        fits = math.isfinite(value)
    if fits and ((low is not None and value < low) or (high is not None and value > high)):
        fits = False
    if not fits:
        raise InvalidInput(f"parameter {name!r} must be {expected}, got {value!r}")
    return value

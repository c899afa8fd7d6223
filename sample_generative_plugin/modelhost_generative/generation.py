"""The generation loop, apart from any server: a prompt in, text pieces out as the tokens are made.

``generate_text`` is the whole of it; the plugin's ``generate`` hook runs
``pieces``, which also says how many tokens each piece holds, and
``python -m modelhost_generative.loop`` times it in a plain process.
``Decoding`` and ``step_all`` are the same loop turned inside out, for the
plugin's ``begin`` and ``step`` hooks: many sequences advanced a token each in
one batched pass (``Network.decode_batch``), each making the pieces ``pieces``
would make of it alone.
"""

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from tokenizers import Tokenizer

from .network import KVCache, Network
from .tokenizer import Codec, Detokenizer


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """The next token: the likeliest at temperature 0, else drawn from the top-p share of the distribution."""
    if temperature == 0:
        return int(np.argmax(logits))
    # float64 from here: at a low temperature float32's exp underflows, and the cumulative sums must end at 1.
    scaled = logits.astype(np.float64) / temperature
    weights = np.exp(scaled - scaled.max())
    candidates: Optional[np.ndarray] = None
    if top_p < 1:
        candidates = np.argsort(-weights, kind="stable")
        weights = weights[candidates]
        # The fewest likeliest tokens whose probabilities reach top_p.
        kept = int(np.searchsorted(np.cumsum(weights), top_p * weights.sum())) + 1
        candidates, weights = candidates[:kept], weights[:kept]
    cumulative = np.cumsum(weights)
    index = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(weights) - 1)
    return int(candidates[index]) if candidates is not None else index


def tokens(network: Network, prompt_ids: Sequence[int], max_tokens: int, temperature: float = 0.0,
           top_p: float = 1.0, seed: Optional[int] = None, end_id: Optional[int] = None) -> Iterator[int]:
    """The generated token ids, each yielded as soon as it is drawn; ``end_id`` ends them, unyielded.

    At most ``max_tokens``, and no more than the context has room for after the prompt.
    """
    limit = min(max_tokens, network.config.context - len(prompt_ids))
    if limit <= 0:
        return
    rng = np.random.default_rng(seed)
    cache, logits = network.prefill(prompt_ids)
    for produced in range(1, limit + 1):
        token = sample(logits, temperature, top_p, rng)
        if token == end_id:
            return
        yield token
        if produced < limit:  # the last token's logits would never be read
            logits = network.decode(cache, token)


def pieces(network: Network, codec: Codec, prompt_ids: Sequence[int], max_tokens: int, temperature: float = 0.0,
           top_p: float = 1.0, seed: Optional[int] = None) -> Iterator[tuple[str, int]]:
    """(text, how many tokens made it) as the tokens come: a token that ends inside a character is held back
    and counted with the piece that completes it."""
    detokenizer, held = codec.detokenizer(), 0
    for token in tokens(network, prompt_ids, max_tokens, temperature, top_p, seed, codec.end_id):
        held += 1
        text = detokenizer.feed(token)
        if text:
            yield text, held
            held = 0
    rest = detokenizer.flush()
    if rest or held:
        yield rest, held


def prompt_ids(codec: Codec, text: str) -> list[int]:
    """The prompt's tokens; an empty prompt starts from the end token, as GPT-2 starts a text."""
    ids = codec.encode(text)
    if not ids:
        if codec.end_id is None:
            raise ValueError("an empty prompt, and the tokenizer has no end token to start from")
        ids = [codec.end_id]
    return ids


def generate_text(network: Network, tokenizer: Union[Codec, Tokenizer], prompt: Union[str, Sequence[int]],
                  max_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                  seed: Optional[int] = None) -> Iterator[str]:
    """Text pieces of the answer to ``prompt`` (text, or token ids), each as soon as its characters are whole."""
    codec = tokenizer if isinstance(tokenizer, Codec) else Codec(tokenizer)
    ids = prompt_ids(codec, prompt) if isinstance(prompt, str) else list(prompt)
    for text, _ in pieces(network, codec, ids, max_tokens, temperature, top_p, seed):
        if text:
            yield text


@dataclass(eq=False)
class Decoding:
    """One sequence between steps: its cache, the logits for its next token, what it has made so far."""

    cache: KVCache
    logits: np.ndarray
    limit: int  # tokens it may make: max_tokens, within the context
    temperature: float
    top_p: float
    rng: np.random.Generator
    detokenizer: Detokenizer
    produced: int = 0
    held: int = 0  # tokens whose text is not whole yet
    ended: bool = False
    drawn: Optional[int] = None  # the token the last step drew, not yet read into the cache

    @classmethod
    def begin(cls, network: Network, codec: Codec, prompt_ids: Sequence[int], max_tokens: int,
              temperature: float = 0.0, top_p: float = 1.0, seed: Optional[int] = None) -> "Decoding":
        """The prompt read (prefill): ready for its first step."""
        limit = min(max_tokens, network.config.context - len(prompt_ids))
        cache, logits = network.prefill(prompt_ids)
        return cls(cache, logits, limit, temperature, top_p, np.random.default_rng(seed), codec.detokenizer())


def step_all(network: Network, codec: Codec, decodings: Sequence[Decoding]) -> list[Optional[tuple[str, int]]]:
    """Advance each sequence a token: each one's (text, tokens it holds), ("", 0) when nothing is whole yet, or
    None once it has ended (``decoding.ended``).

    The tokens the last step drew are read into their caches first, all in one pass, and then each sequence's
    next token is drawn: so a sequence's first step, right after its prefill, draws its first token at once,
    with no pass to wait for, and its last token is never read in.
    """
    reading = [decoding for decoding in decodings if decoding.drawn is not None and not decoding.ended]
    if reading:
        logits = network.decode_batch([decoding.cache for decoding in reading],
                                      [decoding.drawn for decoding in reading])  # type: ignore[misc]
        for decoding, row in zip(reading, logits):
            decoding.logits, decoding.drawn = row, None
    made: list[Optional[tuple[str, int]]] = []
    for decoding in decodings:
        if decoding.ended:
            made.append(None)
            continue
        token = sample(decoding.logits, decoding.temperature, decoding.top_p, decoding.rng) \
            if decoding.produced < decoding.limit else codec.end_id
        if token == codec.end_id or token is None:  # ends here: what it held back goes with its last piece
            decoding.ended = True
            made.append((decoding.detokenizer.flush(), decoding.held))
            continue
        decoding.produced += 1
        decoding.held += 1
        text = decoding.detokenizer.feed(token)
        if decoding.produced == decoding.limit:  # its last token: the last token's logits would never be read
            decoding.ended = True
            text += decoding.detokenizer.flush()
        made.append((text, decoding.held) if text or decoding.ended else ("", 0))
        if text or decoding.ended:
            decoding.held = 0
        decoding.drawn = None if decoding.ended else token
    return made

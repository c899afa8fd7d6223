"""tiny-gpt: a small decoder-only transformer in NumPy (float32), with a KV cache for generation.

GPT-2's architecture: token and learned position embeddings, pre-LayerNorm
blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm
and the output projection tied to the token embeddings. ``prefill`` reads a
prompt into a ``KVCache``, ``decode`` adds one token to it, and
``decode_batch`` advances several sequences of different lengths at once.

A token step is some 200 small NumPy calls, whose Python cost weighs as much
as their arithmetic, so there are as few as can be: the gain and bias of each LayerNorm and the 1/sqrt(head size)
of attention are folded into the matrix that follows them (an exact identity),
zero biases are skipped, and the heads are one batched matmul, never a loop.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import weights
from .weights import Config

EPS = np.float32(1e-5)
GELU_CUBIC = np.float32(0.044715)
GELU_SCALE = np.float32(np.sqrt(2 / np.pi))


def normalized(x: np.ndarray) -> np.ndarray:
    """LayerNorm without gain and bias (those are folded into the next matrix).

    Sums scaled by 1/d rather than ``mean`` (a Python-level wrapper, 5 us on a
    vector) and in-place steps: half the time of the two-line version.
    """
    scale = np.float32(1 / x.shape[-1])
    x = x - np.add.reduce(x, -1, keepdims=True) * scale
    variance = np.add.reduce(x * x, -1, keepdims=True)
    variance *= scale
    variance += EPS
    x /= np.sqrt(variance, out=variance)
    return x


def gelu(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation of GELU, in place on ``x`` (a fresh product: nobody else holds it)."""
    inner = x * x
    inner *= GELU_CUBIC * GELU_SCALE
    inner += GELU_SCALE
    inner *= x
    np.tanh(inner, out=inner)
    inner += 1
    x *= inner
    x *= np.float32(0.5)
    return x


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return scores


def affine(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray]) -> np.ndarray:
    y = x @ weight
    if bias is not None:
        y += bias
    return y


def folded(gain: np.ndarray, bias: np.ndarray, weight: np.ndarray,
           after: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(n * gain + bias) @ weight + after`` as ``n @ w + b``; a bias of zeros as None, to skip its add."""
    w = np.ascontiguousarray(gain[:, None] * weight, dtype=np.float32)
    b = bias @ weight + (0 if after is None else after)
    return w, (b.astype(np.float32) if np.any(b) else None)


@dataclass
class Block:
    qkv: np.ndarray  # [d, 3d]: ln1 folded in, queries pre-scaled
    qkv_b: Optional[np.ndarray]
    proj: np.ndarray  # [d, d]
    proj_b: Optional[np.ndarray]
    fc: np.ndarray  # [d, 4d]: ln2 folded in
    fc_b: Optional[np.ndarray]
    out: np.ndarray  # [4d, d]
    out_b: Optional[np.ndarray]

    def mlp(self, x: np.ndarray) -> np.ndarray:
        return affine(gelu(affine(normalized(x), self.fc, self.fc_b)), self.out, self.out_b)


class KVCache:
    """One sequence's keys and values, every layer's, in arrays of room for ``capacity`` positions.

    Room grows by doubling (capped at the context), so a token step writes in
    place: copying the cache into a new array at each step (np.concatenate)
    costs a copy of all of it per layer per token, which at a few hundred
    tokens is slower than the step's own arithmetic.
    """

    def __init__(self, config: Config, capacity: int):
        head = config.d_model // config.n_heads
        shape = (config.n_layers, config.n_heads, capacity, head)
        self.context, self.length = config.context, 0
        self.keys, self.values = np.empty(shape, np.float32), np.empty(shape, np.float32)

    def reserve(self, length: int) -> None:
        if length > self.context:
            raise ValueError(f"the sequence would be {length} tokens long; the context holds {self.context}")
        if length > self.keys.shape[2]:
            room = min(max(2 * self.keys.shape[2], length), self.context)
            for name in ("keys", "values"):
                old = getattr(self, name)
                new = np.empty((*old.shape[:2], room, old.shape[3]), np.float32)
                new[:, :, :self.length] = old[:, :, :self.length]
                setattr(self, name, new)


class Network:
    """The network, its weights rearranged for speed on loading; read-only after, so threads may share it."""

    def __init__(self, config: Config, params: dict[str, np.ndarray]):
        self.config, d = config, config.d_model
        self.heads, self.head_size = config.n_heads, d // config.n_heads
        self.wte, self.wpe = params["wte"], params["wpe"]
        self.blocks = []
        query_scale = np.ones(3 * d, np.float32)
        query_scale[:d] = 1 / np.sqrt(self.head_size)
        for i in range(config.n_layers):
            p = {name[len(f"h{i}."):]: value for name, value in params.items() if name.startswith(f"h{i}.")}
            qkv, qkv_b = folded(p["ln1.g"], p["ln1.b"], p["attn.w"] * query_scale, p["attn.b"] * query_scale)
            fc, fc_b = folded(p["ln2.g"], p["ln2.b"], p["fc.w"], p["fc.b"])
            self.blocks.append(Block(qkv, qkv_b, p["proj.w"], nonzero(p["proj.b"]), fc, fc_b, p["out.w"],
                                     nonzero(p["out.b"])))
        self.final_gain, self.final_bias = params["lnf.g"], params["lnf.b"]
        # Tied: the token embeddings, transposed, with the final LayerNorm folded in.
        self.unembed, self.unembed_b = folded(self.final_gain, self.final_bias, self.wte.T)
        self.causal = np.triu(np.full((config.context, config.context), -np.inf, np.float32), 1)

    def forward(self, ids: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Whole sequences at once, ids [B, T] -> the last block's output [B, T, d] and each layer's keys and
        values [B, H, T, head]. Only causal masking: right-padding is never attended to by the tokens before it."""
        batch, length = ids.shape
        x = self.wte[ids] + self.wpe[:length]
        kv = []
        for block in self.blocks:
            qkv = affine(normalized(x), block.qkv, block.qkv_b)
            q, k, v = qkv.reshape(batch, length, 3, self.heads, self.head_size).transpose(2, 0, 3, 1, 4)
            attended = softmax(q @ k.transpose(0, 1, 3, 2) + self.causal[:length, :length]) @ v
            x += affine(attended.transpose(0, 2, 1, 3).reshape(batch, length, -1), block.proj, block.proj_b)
            x += block.mlp(x)
            kv.append((k, v))
        return x, kv

    def prefill(self, ids: Sequence[int]) -> tuple[KVCache, np.ndarray]:
        """A prompt read into a new cache, and the logits [vocab] for the token after it."""
        if not 0 < len(ids) <= self.config.context:
            raise ValueError(f"a prompt of {len(ids)} tokens; it must have 1 to {self.config.context}")
        x, kv = self.forward(np.asarray(ids, np.int64)[None])
        # Room for a short answer up front: most generations then never grow the cache.
        cache = KVCache(self.config, min(self.config.context, 64 * -(-(len(ids) + 64) // 64)))
        for layer, (k, v) in enumerate(kv):
            cache.keys[layer, :, :len(ids)], cache.values[layer, :, :len(ids)] = k[0], v[0]
        cache.length = len(ids)
        return cache, self.logits(x[0, -1])

    def decode(self, cache: KVCache, token: int) -> np.ndarray:
        """``token`` appended to the sequence in ``cache``: the logits [vocab] for the token after it."""
        return self.decode_batch([cache], [token])[0]

    def decode_batch(self, caches: Sequence[KVCache], tokens: Sequence[int]) -> np.ndarray:
        """One token appended to each of several sequences of any lengths, in one pass: logits [B, vocab].

        Ragged, not padded: the matrices see all B rows at once, and attention
        runs per sequence on its own cache in place. Padding would first copy
        every cache into a [B, H, longest, head] array, per layer and per
        step: measured slower from a few sequences of a hundred tokens on
        (see the sample's README), while the ragged loop costs ~10 small calls
        per sequence per layer.
        """
        positions = [cache.length for cache in caches]
        for cache, position in zip(caches, positions):
            cache.reserve(position + 1)
        x = self.wte[np.asarray(tokens)] + self.wpe[positions]
        attended = np.empty((len(caches), self.heads, self.head_size), np.float32)
        for layer, block in enumerate(self.blocks):
            qkv = affine(normalized(x), block.qkv, block.qkv_b).reshape(len(caches), 3, self.heads, -1)
            for row, (cache, position) in enumerate(zip(caches, positions)):
                keys, values = cache.keys[layer], cache.values[layer]
                keys[:, position], values[:, position] = qkv[row, 1], qkv[row, 2]
                scores = qkv[row, 0, :, None, :] @ keys[:, :position + 1].transpose(0, 2, 1)  # [H, 1, T]
                attended[row] = (softmax(scores) @ values[:, :position + 1])[:, 0]
            x += affine(attended.reshape(len(caches), -1), block.proj, block.proj_b)
            x += block.mlp(x)
        for cache in caches:
            cache.length += 1
        return self.logits(x)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return affine(normalized(x), self.unembed, self.unembed_b)

    def embed(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean of each sequence's final hidden states (after the final LayerNorm), L2-normalised: [N, d].

        The sequences go through in one pass, right-padded; the padding's own
        states are computed and left out of the mean.
        """
        if not sequences:
            return np.zeros((0, self.config.d_model), np.float32)
        lengths = np.array([len(ids) for ids in sequences], np.int64)
        if lengths.min() < 1 or lengths.max() > self.config.context:
            raise ValueError(f"each sequence must have 1 to {self.config.context} tokens")
        ids = np.zeros((len(sequences), int(lengths.max())), np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, :len(sequence)] = sequence
        x, _ = self.forward(ids)
        states = normalized(x) * self.final_gain + self.final_bias
        mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.float32)
        pooled = np.einsum("nt,ntd->nd", mask, states) / lengths[:, None].astype(np.float32)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


def kv_bytes(config: Config) -> int:
    """What one sequence's KV cache holds at the most: the whole context, every layer's keys and values."""
    return config.n_layers * 2 * config.context * config.d_model * np.dtype(np.float32).itemsize


def nonzero(bias: np.ndarray) -> Optional[np.ndarray]:
    return bias if np.any(bias) else None


def load_network(vocab: int) -> Network:
    """The network to serve: ``$MODELHOST_TINY_GPT_WEIGHTS``, else the seeded weights for a vocabulary of ``vocab``."""
    config, params = weights.read(weights.weights_path(Config(vocab=vocab)))
    if config.vocab != vocab:
        raise ValueError(f"the weights have a vocabulary of {config.vocab} tokens, the tokenizer {vocab}: point "
                         "MODELHOST_TINY_GPT_TOKENIZER at the tokenizer made for them")
    return Network(config, params)

"""The byte-level BPE tokenizer (``data/tokenizer.json``, made by ``train_tokenizer.py``) and incremental decoding.

A token is a run of bytes, not of characters: "ü" is two tokens here, and a
piece of text cut after the first would hold half a character. ``Detokenizer``
turns tokens into text as they come, holding back the bytes of a character
until all of them have arrived.
"""

import codecs
import os
from pathlib import Path
from typing import Optional, Union

from tokenizers import Tokenizer

from .train_tokenizer import END, TOKENIZER


def byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: the printable bytes stand for themselves, the others
    (space, control bytes) for the characters from U+0100 on, in order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [byte for byte in range(256) if byte not in kept]
    return {**{chr(byte): byte for byte in kept}, **{chr(256 + n): byte for n, byte in enumerate(moved)}}


class Codec:
    """A ``tokenizers.Tokenizer`` with what generation needs besides: each token's bytes, and the end token."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.end_id = tokenizer.token_to_id(END)
        alphabet = byte_alphabet()
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        self.token_bytes = [b""] * tokenizer.get_vocab_size(with_added_tokens=True)
        special = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
        for token, index in vocabulary.items():
            # Special tokens decode to nothing, as tokenizer.decode skips them.
            self.token_bytes[index] = b"" if token in special else bytes(alphabet[char] for char in token)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def detokenizer(self) -> "Detokenizer":
        return Detokenizer(self.token_bytes)


class Detokenizer:
    """Text from tokens as they come: each ``feed`` gives the characters completed so far, never part of one.

    The bytes go through Python's incremental UTF-8 decoder, which keeps an
    unfinished character for the next call: O(1) per token, where decoding the
    whole sequence again at each step costs O(length). Bytes that can never
    make a character become U+FFFD, as ``tokenizer.decode`` makes them.
    """

    def __init__(self, token_bytes: list[bytes]):
        self.token_bytes = token_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token: int) -> str:
        return self.decoder.decode(self.token_bytes[token])

    def flush(self) -> str:
        """What is held back at the end: an unfinished character, as U+FFFD."""
        return self.decoder.decode(b"", final=True)


def tokenizer_path() -> Path:
    """``$MODELHOST_TINY_GPT_TOKENIZER`` (a ``tokenizer.json`` to go with other weights), else the shipped one."""
    chosen = os.environ.get("MODELHOST_TINY_GPT_TOKENIZER")
    return Path(chosen) if chosen else TOKENIZER


def load_tokenizer(path: Optional[Union[str, Path]] = None) -> Codec:
    return Codec(Tokenizer.from_file(str(path or tokenizer_path())))

"""modelhost's sample generative plugin: tiny-gpt, a small decoder-only transformer in NumPy, untrained."""

from .generation import generate_text
from .network import KVCache, Network, load_network
from .plugin import TinyGPT
from .tokenizer import Codec, Detokenizer, load_tokenizer

__all__ = ["Codec", "Detokenizer", "KVCache", "Network", "TinyGPT", "generate_text", "load_network",
           "load_tokenizer"]

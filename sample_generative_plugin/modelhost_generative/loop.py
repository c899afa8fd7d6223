"""Time the plain generation loop in a plain Python process, the figure the served model is held to.

    python -m modelhost_generative.loop --prompt "The model server" --max-tokens 200

Loads the network and tokenizer as the plugin does, runs one short warm-up,
then generates ``--runs`` times and prints tokens per second (generated tokens
over the time from the prompt's text to the last token, prefill included),
the time to the first token and the median time of one token step after it.
"""

import argparse
import statistics
import sys
import time
from typing import Optional

from .generation import pieces, prompt_ids
from .network import Network, load_network
from .tokenizer import Codec, load_tokenizer

PROMPT = "The model server answers one question at a time"  # the default, which bench/'s loops read too


def load() -> tuple[Network, Codec]:
    """The network and tokenizer, as the plugin loads them."""
    codec = load_tokenizer()
    return load_network(codec.vocab_size), codec


def timed_run(network, codec, prompt: str, max_tokens: int, temperature: float, top_p: float,
              seed: Optional[int]) -> tuple[str, int, float, float, list[float]]:
    """(text, tokens, seconds in all, seconds to the first piece, seconds per token of each later piece)."""
    started = last = time.perf_counter()
    texts, produced, first, steps = [], 0, 0.0, []
    for text, count in pieces(network, codec, prompt_ids(codec, prompt), max_tokens, temperature, top_p, seed):
        now = time.perf_counter()
        if produced:
            steps.append((now - last) / count)  # a piece holding a held-back token counts as its tokens' steps
        else:
            first = now - started
        texts.append(text)
        produced, last = produced + count, now
    return "".join(texts), produced, time.perf_counter() - started, first, steps


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Time tiny-gpt's generation loop alone.")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quiet", action="store_true", help="leave out the generated text")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    network, codec = load()
    print(f"loaded in {time.perf_counter() - started:.2f} s: {network.config}")
    timed_run(network, codec, args.prompt, 8, args.temperature, args.top_p, args.seed)  # warm-up

    rates, firsts, steps = [], [], []
    for run in range(args.runs):
        text, produced, elapsed, first, run_steps = timed_run(network, codec, args.prompt, args.max_tokens,
                                                              args.temperature, args.top_p, args.seed)
        rates.append(produced / elapsed)
        firsts.append(first)
        steps.extend(run_steps)
        if run == 0 and not args.quiet:
            print(f"text ({produced} tokens): {text!r}")
    print(f"prompt {len(prompt_ids(codec, args.prompt))} tokens, {produced} generated, {args.runs} runs")
    print(f"tokens/s: median {statistics.median(rates):.1f}, best {max(rates):.1f}")
    print(f"first token: median {statistics.median(firsts) * 1e3:.2f} ms")
    if steps:
        print(f"token step: median {statistics.median(steps) * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

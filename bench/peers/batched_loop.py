"""The sample's batched step alone, in a plain process: the most tokens/s any server's c=32 row can give here.

    OPENBLAS_NUM_THREADS=1 python bench/peers/batched_loop.py --sequences 32 --max-tokens 200 --runs 3

``--sequences`` copies of the plain loop's default prompt read (``Decoding.begin``, the prefill, one at a time)
and then stepped together to their end, ``step_all`` a step (``Network.decode_batch``, what ``TinyGPT.step``
runs), greedy: tokens/s is all their tokens over the time from the first prefill to the last step, the median of
``--runs`` after a warm-up. Their contexts grow from the prompt's length to the prompt's and the answer's in
step, as they do on average in a server whose streams are spread over a stream's life. One JSON object on
stdout: ``tokens_per_s`` (the median) and ``runs`` (each run's).
"""

import argparse
import json
import statistics
import time

from modelhost_generative.generation import Decoding, prompt_ids, step_all
from modelhost_generative.loop import PROMPT, load


def one_run(network, codec, ids: list, sequences: int, max_tokens: int) -> float:
    started = time.perf_counter()
    decodings = [Decoding.begin(network, codec, ids, max_tokens, 0.0) for _ in range(sequences)]
    tokens = 0
    while not all(decoding.ended for decoding in decodings):
        tokens += sum(made[1] for made in step_all(network, codec, decodings) if made)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    network, codec = load()
    ids = prompt_ids(codec, PROMPT)
    one_run(network, codec, ids, args.sequences, 8)  # warm-up
    rates = [one_run(network, codec, ids, args.sequences, args.max_tokens) for _ in range(args.runs)]
    print(json.dumps({"tokens_per_s": statistics.median(rates), "runs": rates}))


if __name__ == "__main__":
    main()

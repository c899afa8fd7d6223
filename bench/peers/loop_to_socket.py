"""The floor under any server of the sample at one stream: the plain loop writing each piece to a socket.

    OPENBLAS_NUM_THREADS=1 python bench/peers/loop_to_socket.py --runs 5

The sample's plain loop (``modelhost_generative.generation.pieces``, what ``python -m modelhost_generative.loop``
times), greedy, 200 tokens from the loop's default prompt; each piece, as it comes, written with one ``send`` as
an OpenAI completion chunk (``data: {...}``) to a Unix socket whose other end a second process reads and drops.
No HTTP, no JSON parsing, no scheduler, no worker: what streaming a piece costs at the least, a system call and
another process woken on the other core. Each run is timed beside a run of the loop alone, alternately, and one
JSON object goes to stdout: ``alone`` and ``writing`` (tokens/s, medians of ``--runs``) and ``ratio`` (the
median of each pair's), the most that any server's one-stream row can give against the plain loop on this
machine.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Optional

from modelhost_generative.generation import pieces, prompt_ids
from modelhost_generative.loop import PROMPT, load

DRAIN = "import socket, sys\nend = socket.socket(fileno=int(sys.argv[1]))\nwhile end.recv(65536):\n    pass\n"


def one_run(network, codec, ids: list, max_tokens: int, out: Optional[socket.socket]) -> float:
    started, tokens = time.perf_counter(), 0
    for text, count in pieces(network, codec, ids, max_tokens, 0.0):
        tokens += count
        if out is not None:
            chunk = {"id": "cmpl-0", "object": "text_completion", "choices": [{"index": 0, "text": text}]}
            out.sendall(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    network, codec = load()
    ids = prompt_ids(codec, PROMPT)
    mine, theirs = socket.socketpair()
    reader = subprocess.Popen([sys.executable, "-c", DRAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        one_run(network, codec, ids, 8, None), one_run(network, codec, ids, 8, mine)  # warm-up
        alone, writing = [], []
        for _ in range(args.runs):
            alone.append(one_run(network, codec, ids, args.max_tokens, None))
            writing.append(one_run(network, codec, ids, args.max_tokens, mine))
    finally:
        mine.close()
        reader.wait(timeout=10)
    print(json.dumps({"alone": statistics.median(alone), "writing": statistics.median(writing),
                      "ratio": statistics.median(w / a for w, a in zip(writing, alone))}))


if __name__ == "__main__":
    main()

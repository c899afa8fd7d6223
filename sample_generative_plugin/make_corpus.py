"""Write modelhost_generative/data/corpus.txt, the text the tokenizer is trained on.

Run once by hand (``python make_corpus.py``); the package ships the file it
writes, so the tokenizer never depends on the Python that serves it. The text
is this sample's own opening prose, then the docstrings of Python's builtins
and of some standard modules (CPython's, under the PSF License Agreement): plain
English about programs, in a deterministic order.
"""

import builtins
import importlib
import inspect
from pathlib import Path

CORPUS = Path(__file__).parent / "modelhost_generative" / "data" / "corpus.txt"
MODULES = ["json", "textwrap", "string", "functools", "itertools", "heapq", "bisect", "random", "statistics",
           "fractions", "decimal", "collections", "contextlib", "dataclasses", "enum", "pathlib", "shutil",
           "tempfile", "logging", "argparse", "csv", "datetime", "calendar", "difflib", "fnmatch", "glob", "gzip",
           "hashlib", "secrets", "queue", "threading", "sched", "selectors", "html", "unittest", "timeit", "typing",
           "abc", "copy", "pickle", "pprint", "weakref", "gc", "inspect"]

# Written for this sample. The accented words and symbols give the tokenizer multi-byte characters to learn.
OPENING = """\
A small model server answers one question at a time, but it may be asked many at once.
Each request carries a prompt, and the model answers it piece by piece, a token after another.
The café on the corner opens at seven; its naïve regulars order the same coffee every day — two euros (2 €).
A tokenizer turns text into numbers and numbers back into text, and it must never cut a character in half.
When the weights are untrained, the answers are gibberish, but the arithmetic behind them is real.
The network reads the prompt once, keeps what each layer saw in a cache, and then adds one token per step.
Attention lets every position look back at the positions before it, never ahead.
Sampling at temperature zero always picks the likeliest token; above zero, a seeded generator picks at random.
Embeddings are averages of the last hidden states, scaled to unit length, so that similar texts point the same way.
Résumés, façades, crème brûlée and the Zürich–München train: words that travel with their accents.
"""


def docstrings() -> list[str]:
    texts = []
    for name in sorted(dir(builtins)):
        doc = inspect.getdoc(getattr(builtins, name))
        if doc and not name.startswith("_"):
            texts.append(f"{name}\n\n{doc}")
    for module in MODULES:
        doc = inspect.getdoc(importlib.import_module(module))
        if doc:
            texts.append(f"The {module} module\n\n{doc}")
    return texts


def main() -> None:
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join([OPENING, *docstrings()]) + "\n"
    CORPUS.write_text(text, encoding="utf-8")
    print(f"wrote {CORPUS} ({len(text.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    main()

"""Train the byte-level BPE tokenizer on the shipped corpus: ``python -m modelhost_generative.train_tokenizer``.

Run offline, once; the package ships its output, ``data/tokenizer.json``, and
serving only loads it. Training is deterministic: the same corpus and
``tokenizers`` version write the same file (``--check`` compares instead of writing).
"""

import argparse
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

DATA = Path(__file__).with_name("data")
CORPUS = DATA / "corpus.txt"
TOKENIZER = DATA / "tokenizer.json"
END = "<|endoftext|>"
# A power of two keeps the tied output projection's matrix a round size; the corpus has merges enough for it.
VOCAB_SIZE = 2048


def train(corpus: Path = CORPUS, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # No prefix space: decode(encode(text)) gives back exactly the text, which incremental decoding relies on.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[END], show_progress=False,
        # All 256 bytes, seen in the corpus or not: any text, in any script, still encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train([str(corpus)], trainer)
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TOKENIZER)
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing it")
    args = parser.parse_args(argv)
    made = train().to_str(pretty=True)
    if args.check:
        same = args.output.read_text(encoding="utf-8") == made
        print(f"{args.output}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    args.output.write_text(made, encoding="utf-8")
    print(f"wrote {args.output} ({len(made)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

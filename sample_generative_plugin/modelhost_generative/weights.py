"""tiny-gpt's weights: made from a fixed seed on first use, cached, or read from ``$MODELHOST_TINY_GPT_WEIGHTS``.

No trained weights can be fetched from here, so they are drawn at random,
scaled as a real model is initialised: the network computes for real, and
what it writes is gibberish. Other weights come as a ``.npz`` in the layout
``build`` writes (GPT-2's, with the query, key and value matrices side by
side in ``attn.w`` and every matrix [in, out]); their vocabulary must be
the tokenizer's.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0
LAYOUT = "v1"  # bumped whenever build() draws differently, so an old cached file is never taken for a new one


@dataclass(frozen=True)
class Config:
    vocab: int = 2048
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    context: int = 512


def cache_dir() -> Path:
    return Path(os.environ.get("MODELHOST_CACHE_DIR") or Path.home() / ".cache" / "modelhost")


def cache_name(config: Config, seed: int = SEED) -> str:
    return (f"tiny-gpt-seed{seed}-vocab{config.vocab}-d{config.d_model}-l{config.n_layers}-h{config.n_heads}"
            f"-ctx{config.context}-{LAYOUT}.npz")


def weights_path(config: Config) -> Path:
    """The file to load: ``$MODELHOST_TINY_GPT_WEIGHTS``, else the seeded weights, built into the cache on first use."""
    chosen = os.environ.get("MODELHOST_TINY_GPT_WEIGHTS")
    if chosen:
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"MODELHOST_TINY_GPT_WEIGHTS is {chosen!r}, which is not a file")
        return Path(chosen)
    path = cache_dir() / cache_name(config)
    if not path.is_file():
        write_atomically(build(config), path)
    return path


def build(config: Config, seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, scale_out = config.d_model, 1 / np.sqrt(2 * config.n_layers)

    def normal(shape, std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def matrix(fan_in, fan_out, std_scale=1.0):
        # 1/sqrt(fan_in) keeps each projection's output near unit variance; the projections that add into the
        # residual stream are scaled down by sqrt(2 * layers), as GPT-2 does, so it does not grow with depth.
        return normal((fan_in, fan_out), std_scale / np.sqrt(fan_in))

    # Embeddings at 0.1 make the tied output logits (final LayerNorm's unit-variance state . embedding) about
    # 1.6 wide: sampling then has a distribution with some shape to it, not a near-uniform one.
    params = {"wte": normal((config.vocab, d), 0.1), "wpe": normal((config.context, d), 0.02),
              "n_heads": np.array(config.n_heads, np.int64)}
    zeros, ones = (lambda n: np.zeros(n, np.float32)), (lambda n: np.ones(n, np.float32))
    for i in range(config.n_layers):
        params |= {
            f"h{i}.ln1.g": ones(d), f"h{i}.ln1.b": zeros(d),
            f"h{i}.attn.w": matrix(d, 3 * d), f"h{i}.attn.b": zeros(3 * d),
            f"h{i}.proj.w": matrix(d, d, scale_out), f"h{i}.proj.b": zeros(d),
            f"h{i}.ln2.g": ones(d), f"h{i}.ln2.b": zeros(d),
            f"h{i}.fc.w": matrix(d, 4 * d), f"h{i}.fc.b": zeros(4 * d),
            f"h{i}.out.w": matrix(4 * d, d, scale_out), f"h{i}.out.b": zeros(d),
        }
    return params | {"lnf.g": ones(d), "lnf.b": zeros(d)}


def read(path: Path) -> tuple[Config, dict[str, np.ndarray]]:
    """The weights in ``path`` and the shape they give the network (heads are stored, the rest is read off)."""
    with np.load(path) as archive:
        params = {name: archive[name] for name in archive.files}
    missing = {"wte", "wpe", "n_heads", "lnf.g", "lnf.b"} - params.keys()
    if missing:
        raise ValueError(f"{path}: not tiny-gpt weights (no {', '.join(sorted(missing))})")
    layers = sum(1 for name in params if name.endswith(".attn.w"))
    (vocab, d_model), context = params["wte"].shape, params["wpe"].shape[0]
    config = Config(vocab=vocab, d_model=d_model, n_layers=layers, n_heads=int(params.pop("n_heads")),
                    context=context)
    if d_model % config.n_heads:
        raise ValueError(f"{path}: d_model {d_model} does not divide into {config.n_heads} heads")
    return config, {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in params.items()}


def write_atomically(params: dict[str, np.ndarray], path: Path) -> None:
    """Written beside ``path`` and renamed into place: servers starting together never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **params)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's file is private; the cache is as readable as a downloaded model
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise

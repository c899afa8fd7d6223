"""The rows of a batch (an array, a list, or a dict of them): counted, grouped, joined into one batch, split back.

Adaptive batching concatenates several requests' inputs along the leading
dimension so that ``predict`` runs once, then splits its outputs by each
request's rows.
"""

from typing import Optional

import numpy as np

from .errors import PluginError


def rows(batch) -> Optional[int]:
    """The leading dimension of an array, a list, or a dict of them (None when it has none)."""
    if isinstance(batch, dict):
        counts = {rows(value) for value in batch.values()}
        return counts.pop() if len(counts) == 1 else None
    if isinstance(batch, list):
        return len(batch)
    shape = getattr(batch, "shape", ())
    return shape[0] if shape else None


def check_rows(outputs, expected: Optional[int], model_name: str, hook: str) -> None:
    """predict (or explain) answers each instance it was given with one row: other counts are the plugin's bug."""
    produced = rows(outputs)
    if expected is not None and produced != expected:
        if produced is not None:
            raise PluginError(f"model {model_name!r}: {hook} returned {produced} rows for {expected} inputs")
        raise PluginError(f"model {model_name!r}: {hook} returned {no_rows(outputs)}, where it must return one row "
                          f"per instance ({expected} here): an array, a list, or a dict of them")


def no_rows(outputs) -> str:
    """What a result that has no rows is, in words."""
    if isinstance(outputs, dict) and outputs:
        counts = ", ".join(f"{name!r}: {rows(value) if rows(value) is not None else 'none'}"
                           for name, value in outputs.items())
        return f"a dict whose values have different numbers of rows ({counts})"
    if isinstance(outputs, np.ndarray):
        return "an array of no dimensions"
    return f"a {type(outputs).__name__}"


def groups_that_concatenate(prepared: dict) -> list[list[int]]:
    """Request indices grouped so that each group's inputs concatenate along the first dimension, and its verb
    is one."""
    groups: dict = {}
    for index, (inputs, size, verb) in prepared.items():
        key = (verb, layout(inputs)) if size is not None else ("alone", index)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def layout(inputs):
    if isinstance(inputs, dict):
        return tuple(sorted((name, layout(value)) for name, value in inputs.items()))
    if isinstance(inputs, np.ndarray):
        return ("array", inputs.dtype.str, inputs.shape[1:])
    return ("list",)


def concatenate(batches: list):
    first = batches[0]
    if isinstance(first, dict):
        return {name: concatenate([batch[name] for batch in batches]) for name in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(batches)
    return [row for batch in batches for row in batch]


def split(outputs, sizes: list[int]) -> list:
    if isinstance(outputs, dict):
        parts = {name: split(value, sizes) for name, value in outputs.items()}
        return [{name: parts[name][index] for name in parts} for index in range(len(sizes))]
    bounds = np.cumsum([0, *sizes])
    return [outputs[start:end] for start, end in zip(bounds[:-1], bounds[1:])]

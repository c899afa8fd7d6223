"""Rows of features for a tabular model's format plugin (scikit-learn, XGBoost, LightGBM): from V1 instances or V2
tensors, and what the gradient-boosting formats' plugins share.

V1 sends rows: ``{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}``. V2 sends one
tensor [N, F], or several, each one column [N] or a block of columns [N, k],
joined left to right in the order sent: that is how a pipeline whose first
column is a string (BYTES) and whose others are numbers gets its rows without
pandas. Rows holding a string become an object array, each value as sent.
"""

from typing import Optional

import numpy as np

from .errors import InvalidInput
from .hookspecs import hookimpl
from .request import InferenceRequest

# A tabular model's call costs mostly its fixed overhead, so concurrent requests' rows share one; batching gathers
# only what already waits, so a lone request is not held back.
BATCHED = {"max_batch_size": 32}


class BoosterModel:
    """(For a format's plugin.) Gradient-boosted trees: numbers in as rows, the booster's answer out as the output
    ``predict`` (V1: ``predictions``), batched by default. A subclass names its ``platform`` and the datatype its
    booster answers, and gives ``load``, which sets ``booster``, ``features`` and ``shape``, and ``predict``."""

    platform = ""
    output_datatype = "FP32"

    def __init__(self):
        self.booster = None
        self.features = 0
        self.shape = [-1]  # [-1, classes] where the booster answers each class's probability

    @hookimpl
    def settings(self):
        return dict(BATCHED)

    @hookimpl
    def metadata(self):
        return {"platform": self.platform,
                "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.features]}],
                "outputs": [{"name": "predict", "datatype": self.output_datatype, "shape": self.shape}]}

    @hookimpl
    def preprocess(self, request):
        rows = feature_rows(request, self.features)
        if rows.dtype == object:
            raise InvalidInput(f"a {self.platform} model takes numbers: send FP32, FP64 or INT rows")
        return rows

    @hookimpl
    def postprocess(self, outputs, request):
        return outputs if request.protocol == "v1" else {"predict": outputs}


def feature_rows(request: InferenceRequest, features: Optional[int]) -> np.ndarray:
    """The request's rows [N, F]; InvalidInput when they are not rows, or have another count of features than
    ``features`` (None: the model does not say)."""
    if request.protocol == "v1":
        what, rows = "each instance", v1_rows(request.instances)
    else:
        what, rows = "each row of the inputs", v2_rows(request.inputs)
    if features is not None and rows.shape[1] != features:
        raise InvalidInput(f"{what} has {rows.shape[1]} feature(s); the model takes {features}")
    return rows


def v1_rows(instances: Optional[list]) -> np.ndarray:
    if not instances:
        raise InvalidInput("the request has no instances: send rows of features, [[f1, f2, ...], ...]")
    try:
        rows = np.asarray(instances)
        if rows.dtype.kind in "UO":  # strings: keep each value as sent rather than turn numbers into text
            rows = np.array(instances, dtype=object)
    except ValueError:
        rows = None
    if rows is None or rows.ndim != 2 or rows.dtype.kind not in "biufO":
        raise InvalidInput("instances must be rows of features of one length, [[f1, f2, ...], ...]")
    return rows


def v2_rows(inputs: dict[str, np.ndarray]) -> np.ndarray:
    if not inputs:
        raise InvalidInput("the request has no inputs: send one [N, F] tensor, or one tensor per column")
    blocks = [columns(name, array) for name, array in inputs.items()]
    counts = {len(block) for block in blocks}
    if len(counts) > 1:
        raise InvalidInput(f"the inputs have different numbers of rows ({', '.join(map(str, sorted(counts)))}): "
                           "each input is columns of the same rows")
    if len(blocks) == 1:
        return blocks[0]
    if any(block.dtype == object for block in blocks):
        return np.concatenate([block.astype(object) for block in blocks], axis=1)
    return np.concatenate(blocks, axis=1)


def columns(name: str, array: np.ndarray) -> np.ndarray:
    """One input as a block of columns [N, k]: BYTES as text, numbers as sent."""
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or not array.shape[0]:
        raise InvalidInput(f"input {name!r} has shape {list(array.shape)}: send rows [N, F], or a column [N]")
    if array.dtype == object:
        return as_text(name, array)
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r} is {array.dtype}: send numbers (FP32, FP64, INT) or text (BYTES)")
    return array


def as_text(name: str, array: np.ndarray) -> np.ndarray:
    """A BYTES input's elements as str, as libraries take text; InvalidInput when one is not UTF-8."""
    try:
        return np.vectorize(lambda value: value.decode() if isinstance(value, bytes) else value, otypes=[object])(array)
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r} holds bytes that are not UTF-8 text") from None

"""A scikit-learn estimator from a joblib or pickle file: its ``predict``, and ``predict_proba`` when asked.

V1 answers the default method's rows as ``predictions``: ``predict``, or
``predict_proba`` with ``PREDICT_PROBA=true`` (KServe's sklearnserver) or
``{"method": "predict_proba"}`` in ``modelhost.json``. V2 answers the outputs
named ``predict`` and ``predict_proba``, as MLServer's runtime does: the ones a
request asks for, else the default method's.
"""

import os

import joblib
import numpy as np

from modelhost import InvalidInput, hookimpl
from modelhost.formats import format_options, model_file
from modelhost.tabular import BATCHED, feature_rows

from . import FORMAT

METHODS = ("predict", "predict_proba")


class SKLearnModel:
    def __init__(self):
        self.estimator = None
        self.method = "predict"
        self.methods: tuple[str, ...] = ()
        self.features = None  # what the estimator was fitted on, when it says

    @hookimpl
    def settings(self):
        return dict(BATCHED)

    @hookimpl
    def load(self, model_dir):
        self.estimator = joblib.load(model_file(model_dir, FORMAT.files))
        self.features = getattr(self.estimator, "n_features_in_", None)
        self.methods = tuple(method for method in METHODS if callable(getattr(self.estimator, method, None)))
        proba = os.environ.get("PREDICT_PROBA", "").lower() == "true"
        self.method = format_options(model_dir).get("method", "predict_proba" if proba else "predict")
        if self.method not in self.methods:
            raise ValueError(f"the estimator has no {self.method} method (it has {', '.join(self.methods)})")

    @hookimpl
    def metadata(self):
        return {
            "platform": "sklearn",
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, self.features or -1]}],
            "outputs": [{"name": method, "datatype": "FP64", "shape": [-1, -1]} if method == "predict_proba" else
                        {"name": method, "datatype": label_datatype(self.estimator), "shape": [-1]}
                        for method in self.methods],
        }

    @hookimpl
    def preprocess(self, request):
        rows = feature_rows(request, self.features)
        wanted = self.wanted(request)
        # One flag column per method, so that a batch of several requests runs each method once, if any asks.
        return {"rows": rows, **{method: np.full(len(rows), method in wanted) for method in self.methods}}

    @hookimpl
    def predict(self, inputs):
        rows = inputs["rows"]
        return {method: getattr(self.estimator, method)(rows) for method in self.methods if inputs[method].any()}

    @hookimpl
    def postprocess(self, outputs, request):
        if request.protocol == "v1":
            return outputs[self.method]
        return {method: outputs[method] for method in self.wanted(request)}

    def wanted(self, request) -> list[str]:
        asked = list(request.requested_outputs or ()) if request.protocol == "v2" else []
        unknown = [name for name in asked if name not in self.methods]
        if unknown:
            raise InvalidInput(f"the model has no output {', '.join(map(repr, unknown))} "
                               f"(it gives {', '.join(self.methods)})")
        return asked or [self.method]


def label_datatype(estimator) -> str:
    """What ``predict`` answers: a classifier's labels as its ``classes_`` hold them, else numbers."""
    classes = getattr(estimator, "classes_", None)
    kind = np.asarray(classes).dtype.kind if classes is not None else "f"
    return {"U": "BYTES", "O": "BYTES", "S": "BYTES", "i": "INT64", "u": "INT64", "b": "BOOL"}.get(kind, "FP64")

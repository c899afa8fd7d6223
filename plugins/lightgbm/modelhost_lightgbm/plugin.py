"""A LightGBM booster from its model file: what ``Booster.predict`` answers, as KServe's lgbserver.

A multiclass model answers each class's probability, a binary one the
positive class's, a regressor its value. V1 answers them as
``predictions``; V2 as the output ``predict``.
"""

import lightgbm

from modelhost import hookimpl
from modelhost.formats import model_file, replica_threads
from modelhost.tabular import BoosterModel

from . import FORMAT


class LightGBMModel(BoosterModel):
    platform = "lightgbm"
    output_datatype = "FP64"  # LightGBM computes and answers in doubles

    def __init__(self):
        super().__init__()
        self.threads = 1

    @hookimpl
    def load(self, settings, model_dir):
        self.booster = lightgbm.Booster(model_file=str(model_file(model_dir, FORMAT.files)))
        self.threads = replica_threads(settings["replicas"])
        self.features = self.booster.num_feature()
        # A multiclass objective grows one tree per class each iteration, and answers each class's probability.
        classes = self.booster.num_model_per_iteration()
        self.shape = [-1, classes] if classes > 1 else [-1]

    @hookimpl
    def predict(self, inputs):
        return self.booster.predict(inputs, num_threads=self.threads)

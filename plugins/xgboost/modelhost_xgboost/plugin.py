"""An XGBoost booster from its JSON or UBJSON file: what ``Booster.predict`` answers, as KServe's xgbserver.

A classifier trained with ``multi:softprob`` answers each class's
probability, ``binary:logistic`` the positive class's, a regressor its value.
V1 answers them as ``predictions``; V2 as the output ``predict``.
"""

import json

import numpy as np
import xgboost

from modelhost import hookimpl
from modelhost.formats import model_file, replica_threads
from modelhost.tabular import BoosterModel

from . import FORMAT


class XGBoostModel(BoosterModel):
    platform = "xgboost"

    @hookimpl
    def load(self, settings, model_dir):
        self.booster = xgboost.Booster()
        self.booster.load_model(str(model_file(model_dir, FORMAT.files)))
        self.booster.set_param({"nthread": replica_threads(settings["replicas"])})
        self.features = self.booster.num_features()
        learner = json.loads(self.booster.save_config())["learner"]
        classes = int(learner["learner_model_param"].get("num_class", "0"))
        # multi:softprob answers each class's probability; every other objective one number a row.
        self.shape = [-1, classes] if learner["objective"]["name"] == "multi:softprob" else [-1]

    @hookimpl
    def predict(self, inputs):
        # inplace_predict reads the array as it is, without building a DMatrix for each batch.
        return self.booster.inplace_predict(np.ascontiguousarray(inputs, dtype=np.float32))

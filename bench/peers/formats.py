"""formats_compare.py's models, request bodies and servers: model files served with no code of ours.

The tabular models are trained here, in code, on synthetic iris-sized data
(150 rows, 4 features, 3 classes, seed 0), and written once per run into
folders of the cache: a scikit-learn RandomForestClassifier as ``model.joblib``
and an XGBoost classifier as ``model.json``. MLServer reads the same files
through its own runtimes (mlserver-sklearn, mlserver-xgboost), each with a
``model-settings.json`` that names the runtime and the file and nothing more:
their defaults. AlexNet is the sample's ONNX file, linked as ``model.onnx``.
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import xgboost
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from . import cases as casebook
from . import servers as launcher

SKLEARN, XGBOOST, ALEXNET = "iris-sklearn", "iris-xgboost", "alexnet-file"
HANDWRITTEN = "custom-model"  # the sample plugin's model, as it names itself
TABULAR_INPUT = "input-0"  # the V2 input name of both runtimes' examples (a tabular runtime reads any name)
ONNX_INPUT = "input"  # the sample's graph names its input so: the ONNX runtime takes the graph's names
SETTINGS = launcher.PEERS / "mlserver_repo" / "settings.json"  # compare.py's: debug off, 127.0.0.1


@dataclass
class Target(casebook.Target):
    """A row, with what a right answer of its server holds: the two sides of a case answer differently."""

    expected: tuple = ()  # (output name, values)


@dataclass
class Models:
    sklearn_dir: Path
    xgboost_dir: Path
    onnx_dir: Path
    row: np.ndarray  # the one row every tabular request sends, [1, 4]
    labels: np.ndarray  # the estimator's predict on it
    probabilities: np.ndarray  # the booster's multi:softprob on it, [1, 3]
    xgboost_labels: np.ndarray  # XGBClassifier.predict on it: the argmax


def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=150, n_features=4, n_informative=3, n_redundant=1, n_classes=3,
                               random_state=0)


def train(folder: Path, alexnet: Path) -> Models:
    """The three model folders under ``folder``, the models trained (seed 0) and written anew each run."""
    features, classes = data()
    sklearn_dir, xgboost_dir, onnx_dir = folder / "sklearn", folder / "xgboost", folder / "onnx"
    for made in (sklearn_dir, xgboost_dir, onnx_dir):
        made.mkdir(parents=True, exist_ok=True)
    forest = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(features, classes)
    joblib.dump(forest, sklearn_dir / "model.joblib")
    booster = xgboost.XGBClassifier(n_estimators=50, max_depth=6, random_state=0).fit(features, classes)
    booster.save_model(xgboost_dir / "model.json")
    link = onnx_dir / "model.onnx"
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(alexnet)
    except OSError:
        shutil.copyfile(alexnet, link)
    # Four decimals, so that the JSON body holds the very values the expected answers are computed from.
    row = np.round(features[:1], 4)
    return Models(sklearn_dir, xgboost_dir, onnx_dir, row, forest.predict(row),
                  booster.predict_proba(row.astype(np.float32)), booster.predict(row.astype(np.float32)))


def mlserver_repository(folder: Path, models: Models) -> Path:
    """MLServer's model repository: its settings.json as compare.py runs it, and one folder per model whose
    model-settings.json gives the runtime and the file, every other setting left at MLServer's default."""
    repo = folder / "mlserver_repo"
    for name, implementation, uri in ((SKLEARN, "mlserver_sklearn.SKLearnModel", models.sklearn_dir / "model.joblib"),
                                      (XGBOOST, "mlserver_xgboost.XGBoostModel", models.xgboost_dir / "model.json")):
        (repo / name).mkdir(parents=True, exist_ok=True)
        settings = {"name": name, "implementation": implementation, "parameters": {"uri": str(uri)}}
        (repo / name / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    shutil.copyfile(SETTINGS, repo / "settings.json")
    return repo


def v2_tabular(array: np.ndarray, datatype: str) -> bytes:
    return json.dumps({"inputs": [{"name": TABULAR_INPUT, "shape": list(array.shape), "datatype": datatype,
                                   "data": array.ravel().tolist()}]}).encode()


def modelhost_command(port: int, grpc_port: int, *flags: str) -> list:
    """modelhost as shipped but for the ports, and per-request logs off as in compare.py."""
    return [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
            "--grpc_port", str(grpc_port), "--log-level", "WARNING", *flags]


def modelhost(label: str, *flags: str) -> launcher.Server:
    port, grpc_port = launcher.free_port(), launcher.free_port()
    return launcher.Server(label, modelhost_command(port, grpc_port, *flags), launcher.environment(), port, grpc_port)


def shown(server: launcher.Server) -> str:
    """The server's command as a reader would type it: ``modelhost`` for ``python -m modelhost``."""
    command = [os.path.basename(part) if index == 0 else part for index, part in enumerate(server.command)]
    text = " ".join(command)
    return text.replace(f"{os.path.basename(sys.executable)} -m modelhost", "modelhost", 1)

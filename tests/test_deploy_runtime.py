"""deploy/clusterservingruntime.yaml and deploy/model-file.yaml: checked against KServe's CRDs, and the runtime's
container args served for real, with a model file where KServe's storage initializer would put one."""

import copy
from pathlib import Path

import joblib
import jsonschema
import numpy as np
import pytest
import requests
import yaml
from sklearn.linear_model import LogisticRegression

from support import ROOT, running_server
from test_deploy import strict

KSERVE = ROOT.parent / "shared" / "kserve"
MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri's files


def read(manifest: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / manifest).read_text())


def schema(crd: str, version: str) -> dict:
    path = KSERVE / crd
    if not path.is_file():
        pytest.fail(f"KServe's CRD is not at {path}: the manifests cannot be validated (see shared/kserve/README.md)")
    loaded = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (found,) = [v for v in loaded["spec"]["versions"] if v["name"] == version]
    return strict(found["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def runtime() -> dict:
    return read("clusterservingruntime.yaml")


def test_the_runtime_validates_against_the_clusterservingruntime_crd(runtime):
    checked = schema("serving.kserve.io_clusterservingruntimes.yaml", "v1alpha1")
    jsonschema.validate(runtime, checked, cls=jsonschema.Draft7Validator)
    broken = copy.deepcopy(runtime)
    broken["spec"]["supportedModelFormats"][0]["autoselect"] = broken["spec"]["supportedModelFormats"][0].pop("autoSelect")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, checked, cls=jsonschema.Draft7Validator)


def test_the_runtime_serves_the_formats_whose_plugins_are_first_party(runtime):
    served = {entry["name"] for entry in runtime["spec"]["supportedModelFormats"]}
    plugins = {path.name for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").is_file()}
    assert served == {"sklearn", "xgboost", "lightgbm", "onnx"} and served <= plugins


def test_the_inferenceservice_validates_and_names_the_runtime_and_one_of_its_formats(runtime):
    service = read("model-file.yaml")
    jsonschema.validate(service, schema("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
                        cls=jsonschema.Draft7Validator)
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and "storageUri" in model
    assert model["modelFormat"]["name"] in {entry["name"] for entry in runtime["spec"]["supportedModelFormats"]}


def test_the_runtimes_container_args_serve_a_model_file(runtime, tmp_path):
    features = np.random.default_rng(0).normal(size=(60, 4))
    classifier = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    joblib.dump(classifier, tmp_path / "model.joblib")
    (container,) = runtime["spec"]["containers"]
    # As KServe's controller fills in the args: {{.Name}} is the InferenceService's name.
    args = [arg.replace("{{.Name}}", "sklearn-iris").replace(MOUNT, str(tmp_path)) for arg in container["args"]]
    assert container["command"] == ["modelhost", "serve"]
    with running_server(*args, "--http_port", "0", "--grpc_port", "0") as server:
        answer = requests.post(f"{server.url}/v1/models/sklearn-iris:predict", json={"instances": features[:3].tolist()})
        assert answer.json() == {"predictions": classifier.predict(features[:3]).tolist()}

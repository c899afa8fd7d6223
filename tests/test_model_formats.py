"""Model files served with no code (``--model_dir``): scikit-learn, XGBoost and ONNX, answers equal to the libraries'.

The models are made here: scikit-learn on iris-sized synthetic data, the same
model converted to ONNX with skl2onnx, XGBoost and LightGBM classifiers, a pipeline with
a string column, and an ONNX graph with two inputs and a dynamic dimension
built with onnx.helper. One server per runner (in-process, workers, Ray) serves them all from one folder.
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import joblib
import lightgbm
import numpy as np
import onnx
import onnxruntime
import pytest
import requests
import xgboost
from modelhost_onnx.plugin import chosen_providers
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from support import plugin_env, running_server

ROWS = np.random.default_rng(1).normal(size=(5, 4))
COLORS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A --model_dir with one folder per model, and each model as the library holds it."""
    folder = tmp_path_factory.mktemp("models")
    features, labels = make_classification(150, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0)
    classifier = LogisticRegression(max_iter=500).fit(features, labels)
    save(folder / "iris" / "model.joblib", lambda path: joblib.dump(classifier, path))
    booster = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(features, labels)
    save(folder / "trees" / "model.json", booster.save_model)
    boosted = lightgbm.LGBMClassifier(n_estimators=10, max_depth=3, verbose=-1).fit(features, labels)
    save(folder / "boosted" / "model.bst", lambda path: boosted.booster_.save_model(str(path)))
    converted = to_onnx(classifier, features[:1].astype(np.float32), options={"zipmap": False})
    save(folder / "converted" / "model.onnx", lambda path: path.write_bytes(converted.SerializeToString()))
    save(folder / "sum" / "model.onnx", lambda path: onnx.save(two_inputs(), str(path)))
    save(folder / "words" / "model.onnx", lambda path: onnx.save(text_identity(), str(path)))
    colors = np.array([[COLORS[i % 3], *row] for i, row in enumerate(features[:, :2].tolist())], dtype=object)
    pipeline = make_pipeline(ColumnTransformer([("color", OneHotEncoder(), [0])], remainder="passthrough"),
                             LogisticRegression(max_iter=500)).fit(colors, labels)
    save(folder / "colors" / "model.joblib", lambda path: joblib.dump(pipeline, path))
    return folder, {"iris": classifier, "trees": booster.get_booster(), "boosted": boosted.booster_,
                    "converted": str(folder / "converted" / "model.onnx"), "colors": pipeline}


def save(path, write):
    path.parent.mkdir()
    write(path)


def two_inputs() -> onnx.ModelProto:
    """``total = a + b`` and ``scaled = a * 2``: two FP32 inputs [N, 3], N dynamic."""
    a, b = (helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]) for name in "ab")
    total, scaled = (helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]) for name in ("total", "scaled"))
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["total"]),
                               helper.make_node("Mul", ["a", "two"], ["scaled"])],
                              "two_inputs", [a, b], [total, scaled], initializer=[two])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def text_identity() -> onnx.ModelProto:
    """A STRING input [N] answered as it came."""
    words, same = (helper.make_tensor_value_info(name, TensorProto.STRING, ["N"]) for name in ("words", "same"))
    graph = helper.make_graph([helper.make_node("Identity", ["words"], ["same"])], "text", [words], [same])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def server(models, runner):
    (folder, _), (args, env) = models, runner
    # Batching: scikit-learn's and XGBoost's by their runtimes' own default, ONNX's asked for, since it batches
    # only a graph with a batch dimension. Pickles allowed: the folder is the test's own.
    with running_server("--model_dir", str(folder), "--allow_format", "sklearn", "--max_batch_size", "converted=8",
                        "--max_batch_wait_ms", "20", *args, env={**plugin_env(), **env}, timeout=120) as running:
        yield running


def v2(server, model, inputs, **extra):
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": list(np.shape(data)),
                        "data": np.asarray(data).ravel().tolist()} for name, datatype, data in inputs], **extra}
    return requests.post(f"{server.url}/v2/models/{model}/infer", json=body)


def outputs(answer) -> dict:
    assert answer.status_code == 200, answer.text
    return {output["name"]: np.reshape(output["data"], output["shape"]) for output in answer.json()["outputs"]}


def test_scikit_learn_answers_as_the_estimator_does(server, models):
    classifier = models[1]["iris"]
    v1 = requests.post(f"{server.url}/v1/models/iris:predict", json={"instances": ROWS.tolist()})
    assert v1.json() == {"predictions": classifier.predict(ROWS).tolist()}
    both = outputs(v2(server, "iris", [("input-0", "FP64", ROWS)], outputs=[{"name": "predict_proba"},
                                                                            {"name": "predict"}]))
    np.testing.assert_allclose(both["predict_proba"], classifier.predict_proba(ROWS))
    assert both["predict"].tolist() == classifier.predict(ROWS).tolist()
    assert list(outputs(v2(server, "iris", [("input-0", "FP32", ROWS.astype(np.float32))]))) == ["predict"]


def test_a_pipeline_takes_a_string_column_as_bytes_beside_numbers(server, models):
    pipeline = models[1]["colors"]
    colors, numbers = np.array(["blue", "red", "green"]), ROWS[:3, :2]
    answer = outputs(v2(server, "colors", [("color", "BYTES", colors), ("numbers", "FP64", numbers)]))
    rows = np.concatenate([colors.astype(object).reshape(-1, 1), numbers.astype(object)], axis=1)
    assert answer["predict"].tolist() == pipeline.predict(rows).tolist()
    v1 = requests.post(f"{server.url}/v1/models/colors:predict", json={"instances": rows.tolist()})
    assert v1.json() == {"predictions": pipeline.predict(rows).tolist()}


@pytest.mark.parametrize("model", ["trees", "boosted"])  # XGBoost's, LightGBM's
def test_a_booster_answers_as_the_library_does(server, models, model):
    _, _, expected = library_call(models, model)
    v1 = requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": ROWS.tolist()})
    np.testing.assert_allclose(v1.json()["predictions"], expected(ROWS), rtol=1e-6)
    for datatype in ("FP32", "FP64", "INT64"):
        rows = ROWS.astype({"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[datatype])
        answer = v2(server, model, [("input-0", datatype, rows)])
        np.testing.assert_allclose(outputs(answer)["predict"], expected(rows), rtol=1e-6)
        assert answer.json()["outputs"][0]["datatype"] == {"trees": "FP32", "boosted": "FP64"}[model]


def test_onnx_answers_as_onnx_runtime_does(server, models):
    session = onnxruntime.InferenceSession(models[1]["converted"], providers=["CPUExecutionProvider"])
    rows = ROWS.astype(np.float32)
    label, probabilities = session.run(None, {"X": rows})
    answer = outputs(v2(server, "converted", [("X", "FP32", rows)]))
    assert answer["label"].tolist() == label.tolist()
    np.testing.assert_allclose(answer["probabilities"], probabilities, rtol=1e-6)
    v1 = requests.post(f"{server.url}/v1/models/converted:predict", json={"instances": rows.tolist()})
    assert [row["label"] for row in v1.json()["predictions"]] == label.tolist()


def test_onnx_with_two_inputs_and_a_dynamic_dimension(server):
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)
    answer = outputs(v2(server, "sum", [("a", "FP32", a), ("b", "FP32", b)]))
    assert answer["total"].tolist() == (a + b).tolist() and answer["scaled"].tolist() == (a * 2).tolist()
    v1 = requests.post(f"{server.url}/v1/models/sum:predict",
                       json={"instances": [{"a": row.tolist(), "b": [1, 1, 1]} for row in a]})
    assert v1.json()["predictions"] == [{"total": (row + 1).tolist(), "scaled": (row * 2).tolist()} for row in a]


def test_onnx_string_inputs_are_bytes(server):
    answer = v2(server, "words", [("words", "BYTES", np.array(["ünï", "code"]))])
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == ["ünï", "code"] and answer.json()["outputs"][0]["datatype"] == "BYTES"


def test_metadata_comes_from_the_model_files(server):
    described = {name: requests.get(f"{server.url}/v2/models/{name}").json()
                 for name in ("iris", "trees", "boosted", "converted", "sum", "colors")}
    assert described["sum"]["platform"] == "onnxruntime_onnx"
    assert described["sum"]["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                                          {"name": "b", "datatype": "FP32", "shape": [-1, 3]}]
    assert [output["name"] for output in described["sum"]["outputs"]] == ["total", "scaled"]
    assert described["converted"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert described["iris"]["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [output["name"] for output in described["iris"]["outputs"]] == ["predict", "predict_proba"]
    assert described["trees"]["platform"] == "xgboost" and described["trees"]["inputs"][0]["shape"] == [-1, 4]
    assert described["trees"]["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1, 3]}]
    assert described["boosted"]["platform"] == "lightgbm" and described["boosted"]["inputs"][0]["shape"] == [-1, 4]
    assert described["boosted"]["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1, 3]}]


@pytest.mark.parametrize("model, inputs, message", [
    ("sum", [("a", "FP32", np.ones((2, 3)))], "missing input 'b'"),
    ("sum", [("a", "FP64", np.ones((2, 3))), ("b", "FP32", np.ones((2, 3)))], "input 'a' is FP64; the model takes FP32"),
    ("sum", [("a", "FP32", np.ones((2, 4))), ("b", "FP32", np.ones((2, 4)))], "input 'a' has shape [2, 4]"),
    ("sum", [("a", "FP32", np.ones((2, 3))), ("b", "FP32", np.ones((2, 3))), ("c", "FP32", np.ones((2, 3)))],
     "no input 'c'"),
    ("iris", [("input-0", "FP64", np.ones((2, 3)))], "has 3 feature(s); the model takes 4"),
    ("trees", [("input-0", "FP32", np.ones((2, 5)))], "has 5 feature(s); the model takes 4"),
    ("trees", [("input-0", "BYTES", np.array([["a"] * 4]))], "takes numbers"),
    ("boosted", [("input-0", "FP64", np.ones((2, 3)))], "has 3 feature(s); the model takes 4"),
    ("boosted", [("input-0", "BYTES", np.array([["a"] * 4]))], "takes numbers"),
])
def test_bad_inputs_get_400_naming_what_is_wrong(server, model, inputs, message):
    answer = v2(server, model, inputs)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_bad_v1_instances_and_outputs_get_400(server):
    ragged = requests.post(f"{server.url}/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4], [1]]})
    assert ragged.status_code == 400 and "rows of features" in ragged.json()["error"]
    asked = v2(server, "iris", [("input-0", "FP64", ROWS)], outputs=[{"name": "transform"}])
    assert asked.status_code == 400 and "no output 'transform'" in asked.json()["error"]
    assert requests.get(f"{server.url}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("model", ["iris", "trees", "boosted", "converted"])
def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(server, models, model):
    (input_name, output_name, expected), pool = library_call(models, model), ThreadPoolExecutor(16)
    batches_before = batch_count(server, model)
    sent = [ROWS[i % 5:i % 5 + 1 + i % 3].astype(np.float32) for i in range(48)]
    answers = list(pool.map(lambda rows: outputs(v2(server, model, [(input_name, "FP32", rows)])), sent))
    for rows, answer in zip(sent, answers):
        np.testing.assert_allclose(answer[output_name], expected(rows), rtol=1e-5)
    assert batch_count(server, model) - batches_before < len(sent)  # some requests shared a predict


def library_call(models, model):
    """The input a model's server takes, the output compared, and the library's own call for rows."""
    held = models[1][model]
    if model == "iris":
        return "input-0", "predict", held.predict
    if model == "trees":  # XGBoost reads rows as FP32, whatever is sent
        return "input-0", "predict", lambda rows: held.inplace_predict(rows.astype(np.float32))
    if model == "boosted":
        return "input-0", "predict", held.predict
    session = onnxruntime.InferenceSession(held, providers=["CPUExecutionProvider"])
    return "X", "probabilities", lambda rows: session.run(["probabilities"], {"X": rows})[0]


def batch_count(server, model) -> float:
    metrics = requests.get(f"{server.url}/metrics").text
    found = re.search(rf'^modelhost_batch_size_count{{model_name="{model}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def modelhost(*args):
    return subprocess.run([sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", "0",
                           "--grpc_port", "0", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_pickle_is_refused_unless_the_command_line_names_or_allows_its_format(models):
    folder, _ = models
    refused = modelhost("--model_dir", str(folder / "iris"))
    assert refused.returncode == 2 and "--model_format sklearn or --allow_format sklearn" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_folder_no_format_serves_says_which_formats_are_installed(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    refused = modelhost("--model_dir", str(tmp_path))
    assert refused.returncode == 2 and "no installed format serves them" in refused.stderr
    assert "onnx (*.onnx)" in refused.stderr and "sklearn (*.joblib" in refused.stderr


def test_a_settings_file_names_the_format_and_its_options(tmp_path, models):
    classifier = models[1]["iris"]
    joblib.dump(classifier, tmp_path / "model.joblib")
    (tmp_path / "modelhost.json").write_text(json.dumps({"format": "sklearn", "method": "predict_proba"}))
    with running_server("--model_dir", str(tmp_path), "--model_name", "flowers", "--model_format", "sklearn",
                        "--replicas", "0") as running:
        answer = requests.post(f"{running.url}/v1/models/flowers:predict", json={"instances": ROWS.tolist()})
        np.testing.assert_allclose(answer.json()["predictions"], classifier.predict_proba(ROWS))


def test_batching_a_graph_without_a_batch_dimension_is_refused(tmp_path):
    fixed = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "fixed", [fixed],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "model.onnx"))
    refused = modelhost("--model_dir", str(tmp_path), "--max_batch_size", "4", "--replicas", "0")
    assert refused.returncode != 0 and "have no batch dimension" in refused.stderr


def test_the_execution_providers_are_chosen_by_a_setting(tmp_path, monkeypatch):
    onnx.save(two_inputs(), str(tmp_path / "model.onnx"))
    (tmp_path / "modelhost.json").write_text(json.dumps({"format": "onnx", "providers": ["NoSuchExecutionProvider"]}))
    refused = modelhost("--model_dir", str(tmp_path), "--replicas", "0")
    assert refused.returncode != 0 and "has no NoSuchExecutionProvider (it has " in refused.stderr
    # By default CUDA where ONNX Runtime has it (onnxruntime-gpu on a machine with a GPU), then the CPU.
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen_providers({}) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv("MODELHOST_ONNX_PROVIDERS", "CPUExecutionProvider")
    assert chosen_providers({}) == ["CPUExecutionProvider"]

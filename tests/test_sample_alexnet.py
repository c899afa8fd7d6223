"""The sample AlexNet plugin (sample_alexnet_plugin/, installed as custom-model) served for real."""

import base64
import io
import json
import os
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
from modelhost import InferenceRequest
from modelhost_alexnet import AlexNet, network
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from support import ROOT, plugin_env, running_server

GUIDE_REQUEST = json.loads((ROOT / "sample_alexnet_plugin" / "input.json").read_text())
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# PIL resizes with 22-bit fixed-point coefficients and rounds to uint8 after each pass; the
# reference below rounds after each pass too, so the two part only where a sum falls within
# ~1e-4 of a rounding boundary, and then by one uint8 level: 1/255/std after normalizing.
ONE_LEVEL = 1 / 255 / STD.min() + 1e-6


def triangle_weights(size_in: int, size_out: int) -> np.ndarray:
    """PIL's antialiased bilinear coefficients: the triangle filter, widened by the downscale factor."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    matrix = np.zeros((size_out, size_in))
    for row in range(size_out):
        center = (row + 0.5) * scale
        low, high = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), size_in)
        taps = np.clip(1 - np.abs((np.arange(low, high) - center + 0.5) / support), 0, None)
        matrix[row, low:high] = taps / taps.sum()
    return matrix


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255)


def reference_preprocess(image_bytes: bytes) -> np.ndarray:
    """torchvision's Resize(256), CenterCrop(224), ToTensor, Normalize in NumPy: [1,3,224,224]."""
    pixels = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"), dtype=np.float64)
    height, width, _ = pixels.shape
    long_side = int(256 * max(height, width) / min(height, width))
    new_height, new_width = (long_side, 256) if width <= height else (256, long_side)
    pixels = to_uint8(np.einsum("ow,hwc->hoc", triangle_weights(width, new_width), pixels))
    pixels = to_uint8(np.einsum("oh,hwc->owc", triangle_weights(height, new_height), pixels))
    top, left = int(round((new_height - 224) / 2.0)), int(round((new_width - 224) / 2.0))
    crop = pixels[top:top + 224, left:left + 224].astype(np.float32) / np.float32(255)
    return ((crop - MEAN) / STD).transpose(2, 0, 1)[None]


def top5(logits: np.ndarray) -> np.ndarray:
    return -np.sort(-logits, axis=1)[:, :5]


GUIDE_IMAGE = base64.b64decode(GUIDE_REQUEST["instances"][0]["image"]["b64"])
GUIDE_TENSOR = reference_preprocess(GUIDE_IMAGE)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# A second, different image: the photograph mirrored.
MIRRORED = png(Image.open(io.BytesIO(GUIDE_IMAGE)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
# Portrait and narrower than 256, so it is enlarged; its crop offset (317 - 224) / 2 = 46.5 rounds to even.
PORTRAIT = png(Image.open(io.BytesIO(GUIDE_IMAGE)).crop((100, 0, 341, 299)))


def instance(image_bytes: bytes) -> dict:
    return {"image": {"b64": base64.b64encode(image_bytes).decode()}}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("modelhost-cache")


def alexnet_env(cache, **extra) -> dict:
    env = plugin_env()
    env.pop("MODELHOST_ALEXNET_MODEL", None)
    env.update(MODELHOST_CACHE_DIR=str(cache), **extra)
    return env


@pytest.fixture(scope="module")
def server(cache_dir):
    # With MODELHOST_ALEXNET_THREADS set, its path is taken too; no answer may depend on it.
    with running_server("--model", "custom-model", env=alexnet_env(cache_dir, MODELHOST_ALEXNET_THREADS="1"),
                        timeout=180) as server:
        yield server


@pytest.fixture(scope="module")
def session(server, cache_dir):
    return ort.InferenceSession(str(cache_dir / network.CACHE_NAME), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("image", [GUIDE_IMAGE, PORTRAIT], ids=["guide", "portrait"])
def test_preprocessing_matches_a_numpy_implementation_of_the_recipe(image):
    plugin = AlexNet().preprocess(InferenceRequest("v1", instances=[instance(image)]))
    assert plugin.shape == (1, 3, 224, 224) and plugin.dtype == np.float32
    difference = np.abs(plugin - reference_preprocess(image))
    assert difference.max() <= ONE_LEVEL
    assert np.mean(difference > 1e-6) < 1e-3


def test_the_network_is_built_once_into_the_cache_as_a_whole_file(server, cache_dir):
    assert [path.name for path in cache_dir.iterdir()] == [network.CACHE_NAME]
    onnx.checker.check_model(str(cache_dir / network.CACHE_NAME))


def test_guide_request_answers_the_top5_logits_of_the_network(server, session):
    response = requests.post(f"{server.url}/v1/models/custom-model:predict", json=GUIDE_REQUEST)
    assert response.status_code == 200, response.text
    [predictions] = response.json()["predictions"]
    assert len(predictions) == 5 and predictions == sorted(predictions, reverse=True)
    expected = top5(session.run(None, {"input": GUIDE_TENSOR})[0])[0]
    # The few one-level differences of the NumPy tensor move these logits (about 7) by about 1e-3.
    np.testing.assert_allclose(predictions, expected, rtol=1e-3, atol=1e-3)


def v1_predict(server, images: list) -> list:
    response = requests.post(f"{server.url}/v1/models/custom-model:predict",
                             json={"instances": [instance(image) for image in images]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_each_instance_gets_its_own_row(server):
    both = v1_predict(server, [GUIDE_IMAGE, MIRRORED])
    assert len(both) == 2 and both[0] != both[1]
    np.testing.assert_allclose(both, v1_predict(server, [GUIDE_IMAGE]) + v1_predict(server, [MIRRORED]), rtol=1e-5)


def v2_infer(server, payload, **kwargs):
    response = requests.post(f"{server.url}/v2/models/custom-model/infer", json=payload, **kwargs)
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


def test_v2_base64_bytes_in_json(server, session):
    outputs = v2_infer(server, {"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(GUIDE_IMAGE).decode()]}]})
    assert outputs["scores"]["datatype"] == "FP32" and outputs["scores"]["shape"] == [1, 5]
    assert outputs["indices"]["datatype"] == "INT64" and outputs["indices"]["shape"] == [1, 5]
    logits = session.run(None, {"input": GUIDE_TENSOR})[0][0]
    np.testing.assert_allclose(outputs["scores"]["data"], logits[outputs["indices"]["data"]], rtol=1e-3, atol=1e-3)


def test_v2_raw_bytes_over_the_binary_extension(server):
    images = [GUIDE_IMAGE, MIRRORED]
    binary = b"".join(struct.pack("<I", len(image)) + image for image in images)
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2, 1],
                                     "parameters": {"binary_data_size": len(binary)}}]}).encode()
    response = requests.post(f"{server.url}/v2/models/custom-model/infer", data=header + binary,
                             headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["scores"]["shape"] == [2, 5]
    np.testing.assert_allclose(np.reshape(outputs["scores"]["data"], (2, 5)), v1_predict(server, images), rtol=1e-5)


def test_v2_preprocessed_fp32_batch_is_passed_through(server, session):
    outputs = v2_infer(server, {"inputs": [
        {"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": GUIDE_TENSOR.ravel().tolist()}]})
    logits = session.run(None, {"input": GUIDE_TENSOR})[0]
    order = np.argsort(-logits, axis=1)[:, :5]
    assert outputs["indices"]["data"] == order.ravel().tolist()
    np.testing.assert_allclose(outputs["scores"]["data"], top5(logits).ravel(), rtol=1e-5)


def v2_request(name: str, datatype: str, shape: list, data: list) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize("payload, message", [
    ({"instances": [instance(GUIDE_IMAGE[: len(GUIDE_IMAGE) // 2])]}, "instance 0: 'image.b64' is a broken image"),
    ({"instances": [instance(GUIDE_IMAGE), instance(b"not an image")]}, "instance 1: 'image.b64' is not an image"),
    ({"instances": [instance(GUIDE_IMAGE), {"image": {"b64": "@@@"}}]}, "instance 1: 'image.b64' is not valid base64"),
    ({"instances": [{"image": "no b64 here"}]}, "instance 0: missing 'image.b64'"),
    ({"instances": []}, "the request has no instances"),
    (v2_request("input", "FP32", [1, 3, 4], [0.0] * 12),
     "input 'input' has shape [1, 3, 4]; an FP32 batch must be [N,3,224,224]"),
    (v2_request("input", "INT32", [1], [1]), "input 'input' is int32"),
    (v2_request("image", "BYTES", [1, 2], ["a", "b"]),
     "input 'image' has shape [1, 2]; encoded images must be [N] or [N,1]"),
    (v2_request("image", "BYTES", [1], ["bm90IGFuIGltYWdl"]), "input 'image' element 0 is not an image"),
])
def test_bad_input_is_a_400_that_names_the_problem(server, payload, message):
    path = "v1/models/custom-model:predict" if "instances" in payload else "v2/models/custom-model/infer"
    response = requests.post(f"{server.url}/{path}", json=payload)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    after = requests.post(f"{server.url}/v1/models/custom-model:predict", json=GUIDE_REQUEST)
    assert after.status_code == 200


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_behind(tmp_path):
    with pytest.raises(TypeError):
        network.write_atomically("text, not bytes", tmp_path / network.CACHE_NAME)
    assert list(tmp_path.iterdir()) == []


def small_net_in_another_layout() -> onnx.ModelProto:
    """Input "data", output "prob", as a Caffe-style AlexNet export names them; tiny and untrained."""
    weights = np.random.default_rng(1).standard_normal((3 * 7 * 7, 1000)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1000])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_modelhost_alexnet_model_serves_that_file_whatever_its_names(tmp_path):
    path = tmp_path / "alexnet.onnx"
    onnx.save(small_net_in_another_layout(), path)
    cache = tmp_path / "cache"
    with running_server("--model", "custom-model", env=alexnet_env(cache, MODELHOST_ALEXNET_MODEL=str(path))) as server:
        response = requests.post(f"{server.url}/v1/models/custom-model:predict", json=GUIDE_REQUEST)
    assert response.status_code == 200, response.text
    expected = top5(ort.InferenceSession(str(path)).run(None, {"data": GUIDE_TENSOR})[0])
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-3, atol=1e-6)
    assert not cache.exists(), "the network was built although a file was given"


@pytest.mark.parametrize("replicas, env, expected", [
    (2, None, max(1, os.cpu_count() // 2)),
    (4, None, max(1, os.cpu_count() // 4)),
    (2, "3", 3),
])
def test_replicas_share_the_cores_unless_threads_are_set(tmp_path, monkeypatch, replicas, env, expected):
    path = tmp_path / "small.onnx"
    onnx.save(small_net_in_another_layout(), path)
    if env:
        monkeypatch.setenv("MODELHOST_ALEXNET_THREADS", env)
    else:
        monkeypatch.delenv("MODELHOST_ALEXNET_THREADS", raising=False)
    session = network.open_session(path, replicas=replicas)
    assert session.get_session_options().intra_op_num_threads == expected


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_the_halves_as_a_kserve_transformer_and_predictor_answer_as_the_whole(server, cache_dir, protocol):
    """``Transformer`` (images in, top 5 out) in front of ``Network`` (tensors in, logits out), as
    deploy/transformer.yaml runs them, both named custom-model as KServe names them."""
    env = alexnet_env(cache_dir, MODELHOST_ALEXNET_THREADS="1")
    with running_server("--plugin", "modelhost_alexnet:Network", "--model_name", "custom-model", env=env,
                        timeout=180) as predictor:
        address = predictor.grpc_address if protocol == "grpc-v2" else predictor.url.removeprefix("http://")
        with running_server("--plugin", "modelhost_alexnet:Transformer", "--model_name", "custom-model",
                            "--predictor_host", address, "--predictor_protocol", protocol, env=env) as transformer:
            images = [GUIDE_IMAGE, MIRRORED]
            np.testing.assert_allclose(v1_predict(transformer, images), v1_predict(server, images), rtol=1e-5)
            encoded = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(GUIDE_IMAGE).decode()]}]}
            apart, whole = v2_infer(transformer, encoded), v2_infer(server, encoded)
            assert apart["indices"]["data"] == whole["indices"]["data"]
            np.testing.assert_allclose(apart["scores"]["data"], whole["scores"]["data"], rtol=1e-5)

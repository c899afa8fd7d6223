"""KServe's "Deploy Custom Python Model" AlexNet, as a modelhost plugin named ``custom-model``.

V1 takes the guide's ``{"instances": [{"image": {"b64": "..."}}]}`` and answers
each instance's top-5 logits. V2 takes one input: encoded images as BYTES
(raw over the binary extension, base64 in JSON), or an FP32 [N,3,224,224]
batch already preprocessed; it answers ``scores`` and their class ``indices``.

Its two halves serve apart as a KServe transformer and its predictor:
``Transformer`` (images in, top 5 out) with ``--predictor_host`` in front of
``Network`` (tensors in, logits out).
"""

import numpy as np

from modelhost import InvalidInput, hookimpl

from . import images, network

TOP = 5
TENSOR_SHAPE = (3, images.CROP, images.CROP)


class Network:
    """The network alone, for a predictor behind ``Transformer``: an FP32 batch [N,3,224,224] in (V2's one
    input, or V1 instances of that shape), the 1000 logits out."""

    def __init__(self):
        self.session = None

    @hookimpl
    def load(self, settings):
        self.session = network.open_session(network.model_path(), replicas=settings["replicas"])
        # Read the names from the file: a real AlexNet export may call them "data" and "prob".
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the ONNX file takes {len(inputs)} inputs; AlexNet takes one image batch")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name

    @hookimpl
    def metadata(self):
        return {
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *TENSOR_SHAPE]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, network.CLASSES]}],
        }

    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v1":
            return tensor_batch("instances", np.asarray(request.instances, dtype=np.float32))
        return v2_batch(request.inputs)

    @hookimpl
    def predict(self, inputs):
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]


class Transformer:
    """The images' side alone, for a KServe transformer (``--predictor_host``) in front of ``Network``: images in,
    decoded and cropped here; the top 5 of the predictor's logits out."""

    @hookimpl
    def metadata(self):
        return {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [-1, TOP]},
                {"name": "indices", "datatype": "INT64", "shape": [-1, TOP]},
            ],
        }

    @hookimpl
    def preprocess(self, request):
        if request.protocol == "v1":
            return v1_batch(request.instances)
        return v2_batch(request.inputs)

    @hookimpl
    def postprocess(self, outputs, request):
        indices = np.argsort(-outputs, axis=1, kind="stable")[:, :TOP]
        scores = np.take_along_axis(outputs, indices, axis=1).astype(np.float32)
        if request.protocol == "v1":
            return scores
        return {"scores": scores, "indices": indices.astype(np.int64)}


class AlexNet(Transformer, Network):
    """Both halves in one server: KServe's guide's ``custom-model``."""

    @hookimpl
    def metadata(self):
        return {
            "platform": "onnxruntime_onnx",
            # Either input, not both: encoded images, or a batch preprocessed by the client.
            "inputs": [*Transformer.metadata(self)["inputs"], *Network.metadata(self)["inputs"]],
            "outputs": Transformer.metadata(self)["outputs"],
        }


def v1_batch(instances: list) -> np.ndarray:
    if not instances:
        raise InvalidInput("the request has no instances")
    rows = []
    for index, instance in enumerate(instances):
        image = instance.get("image") if isinstance(instance, dict) else None
        text = image.get("b64") if isinstance(image, dict) else None
        if not isinstance(text, str):
            raise InvalidInput(
                f"instance {index}: missing 'image.b64' (send {{\"image\": {{\"b64\": \"<base64 JPEG or PNG>\"}}}})"
            )
        try:
            rows.append(images.to_tensor(images.decode(images.from_base64(text))))
        except images.ImageError as exc:
            raise InvalidInput(f"instance {index}: 'image.b64' {exc}") from None
    return np.stack(rows)


def v2_batch(inputs: dict) -> np.ndarray:
    if len(inputs) != 1:
        raise InvalidInput(
            f"send one input, 'image' (BYTES) or 'input' (FP32 [N,3,224,224]); got {len(inputs)}: {', '.join(inputs)}"
        )
    [(name, array)] = inputs.items()
    if array.dtype == object:
        return encoded_batch(name, array)
    if array.dtype != np.float32:
        raise InvalidInput(f"input {name!r} is {array.dtype}: send encoded images as BYTES or a batch as FP32")
    return tensor_batch(f"input {name!r}", array)


def tensor_batch(what: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 4 or array.shape[1:] != TENSOR_SHAPE or not array.shape[0]:
        raise InvalidInput(f"{what} has shape {list(array.shape)}; an FP32 batch must be [N,3,224,224]")
    return array


def encoded_batch(name: str, array: np.ndarray) -> np.ndarray:
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)) or not array.shape[0]:
        raise InvalidInput(f"input {name!r} has shape {list(array.shape)}; encoded images must be [N] or [N,1]")
    rows = []
    for index, data in enumerate(array.reshape(-1)):
        try:
            rows.append(images.to_tensor(images.decode(images.unwrap(data))))
        except images.ImageError as exc:
            raise InvalidInput(f"input {name!r} element {index} {exc}") from None
    return np.stack(rows)

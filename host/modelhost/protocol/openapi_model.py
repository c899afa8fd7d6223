"""One model's OpenAPI document, which its page (``/v2/models/NAME/docs``) shows, as MLServer's per-model docs.

The server's document narrowed to the routes that name a model, with that
model's name filled in and example requests made of the inputs its
``metadata`` hook declares: a "Try it out" sends a request of the right
names, datatypes and shapes. A dynamic dimension (-1) becomes 1.
"""

import math

from .openapi import REPOSITORY, openapi_document

MODEL_PATH = "{name}"
EXPLAIN = "/v1/models/{name}:explain"
PREDICTS = ("/v1/models/{name}:predict", EXPLAIN)
INFERS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
EXAMPLE_VALUES = {"BOOL": True, "BYTES": "text", "FP16": 0.5, "FP32": 0.5, "FP64": 0.5}  # integers: 1


def model_document(name: str, declared: dict, hooks: list[str]) -> dict:
    """``hooks``: those the plugin implements; without ``explain``, ``:explain`` (always 501) is left out."""
    document = openapi_document([name], docs_pages=True)
    document["info"]["title"] = f"modelhost: {name}"
    document["paths"] = {path: item for path, item in document["paths"].items()
                         if MODEL_PATH in path and not path.startswith(REPOSITORY)
                         and (path != EXPLAIN or "explain" in hooks)}
    inputs = [tensor for tensor in declared.get("inputs", []) if {"name", "datatype", "shape"} <= tensor.keys()]
    if inputs:
        for path in PREDICTS:
            if path in document["paths"]:
                _set_example(document, path, {"instances": v1_instances(inputs)})
        for path in INFERS:
            _set_example(document, path, {"id": "1", "inputs": [v2_input(tensor) for tensor in inputs]})
    return document


def v1_instances(inputs: list[dict]) -> list:
    """One instance: the input's rows, or with several inputs one row of each by name."""
    if len(inputs) == 1:
        return _nested(inputs[0])
    return [{tensor["name"]: _nested(tensor)[0] for tensor in inputs}]


def v2_input(tensor: dict) -> dict:
    shape = _fixed(tensor["shape"])
    value = EXAMPLE_VALUES.get(tensor["datatype"], 1)
    return {"name": tensor["name"], "shape": shape, "datatype": tensor["datatype"], "data": [value] * math.prod(shape)}


def _nested(tensor: dict) -> list:
    """The example tensor as nested lists, its first dimension outermost."""
    data: object = EXAMPLE_VALUES.get(tensor["datatype"], 1)
    shape = _fixed(tensor["shape"]) or [1]
    for size in reversed(shape):
        data = [data] * size
    assert isinstance(data, list)
    return data


def _fixed(shape: list[int]) -> list[int]:
    return [1 if size < 0 else size for size in shape]


def _set_example(document: dict, path: str, example: dict) -> None:
    document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"] = example

"""Triton's generate extension (``/generate``, ``/generate_stream``) and server-sent events of V2 responses.

A generate request is a flat JSON object: ``text_input``, ``parameters``, and
other keys that are "passed either as parameters or tensors based on model
specification" (Triton's words): a key the model declares as an input becomes
that input's tensor, with its declared datatype; any other key a parameter.
Its response is flat too: each output tensor under its name, a one-element
tensor as its value (text for BYTES), a larger one as a list.

MLServer's ``infer_stream`` takes a V2 inference request and answers with V2
inference responses, one per event. A body with ``inputs`` sent to
``generate``/``generate_stream`` is read as a V2 request too (as MLServer's
are), and answered in the generate form.
"""

from typing import Any, Optional

import numpy as np

from ..errors import InvalidInput, quoted
from ..request import InferenceRequest
from . import jsonio, v2
from .limits import DEFAULT_LIMITS, RequestLimits
from .tensors import DTYPES

MEDIA_TYPE = "text/event-stream; charset=utf-8"


def decode_generate_request(body: jsonio.Buffer, declared: dict, limits: RequestLimits = DEFAULT_LIMITS
                            ) -> InferenceRequest:
    """A generate request, its keys mapped by the model's ``declared`` metadata; a V2 request when it has
    ``inputs``."""
    payload = jsonio.load_object(body)
    if isinstance(payload.get("inputs"), list):
        request = v2.decode_request(body, None, limits)
        request.verb = "generate"
        return request
    parameters = payload.pop("parameters", None)
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    limits.check_inputs(len(payload))
    limits.check_parameters(len(parameters) + len(payload), "the request")
    types = {str(tensor.get("name")): tensor.get("datatype") for tensor in declared.get("inputs", [])}
    inputs = {}
    for key, value in payload.items():
        if key in types or key == "text_input":
            inputs[key] = as_tensor(key, value, types.get(key, "BYTES"))
        elif isinstance(value, (str, int, float, bool)):
            parameters[key] = value
        else:
            raise InvalidInput(f"{quoted(key)} is no input of the model, and not a parameter: a parameter's value "
                               "is a string, a number or a boolean")
    return InferenceRequest(protocol="v2", verb="generate", inputs=inputs, parameters=parameters)


def as_tensor(name: str, value: Any, datatype: str) -> np.ndarray:
    """A generate request's value as a one-dimensional tensor of the input's datatype."""
    values = value if isinstance(value, list) else [value]
    try:
        if datatype == "BYTES":  # JSON carries text: anything else is no element of it
            if not all(isinstance(item, str) for item in values):
                raise TypeError
            return np.array([item.encode("utf-8") for item in values], dtype=object)
        return np.array(values, dtype=DTYPES[datatype])
    except (TypeError, ValueError, KeyError, OverflowError):
        raise InvalidInput(f"input {quoted(name)} must hold {datatype} values, got {quoted(value)}") from None


def generate_response(outputs: dict[str, np.ndarray], model_name: str, model_version: Optional[str]) -> dict:
    """A generate response: its outputs flattened under their names."""
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    for name, array in outputs.items():
        values = array.ravel().tolist()
        if array.dtype == object:  # BYTES: text, as the generate extension carries it
            values = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in values]
        response[name] = values[0] if len(values) == 1 else values
    return response


def joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A generation's parts as one answer: text outputs joined, other tensors concatenated along their first
    dimension."""
    if len(parts) == 1:
        return parts[0]
    whole = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts if name in part]
        if all(array.dtype == object and array.size == 1 for array in arrays):
            whole[name] = np.array([b"".join(text_bytes(array.item()) for array in arrays)], dtype=object)
        else:
            try:
                whole[name] = np.concatenate([np.atleast_1d(array) for array in arrays])
            except ValueError as error:
                raise InvalidInput(f"output {quoted(name)}'s pieces do not join into one answer ({error}); "
                                   "ask for them streamed") from None
    return whole


def text_bytes(item: Any) -> bytes:
    return item.encode("utf-8") if isinstance(item, str) else bytes(item)


def event(payload: bytes) -> bytes:
    """One server-sent event carrying a JSON body."""
    return b"data: " + payload + b"\n\n"

"""KServe's V1 protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""

from typing import Optional

import numpy as np

from ..errors import InvalidInput
from ..request import InferenceRequest
from . import jsonio


def decode_request(body: jsonio.Buffer, verb: str = "predict") -> InferenceRequest:
    payload = jsonio.load_object(body)
    key = "instances" if "instances" in payload else "inputs"
    instances = payload.get(key)
    if not isinstance(instances, list):
        raise InvalidInput("the request needs 'instances' (or 'inputs') as a JSON list")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    return InferenceRequest(protocol="v1", verb=verb, instances=instances, parameters=parameters or {})


def encode_response(result: object, key: str = "predictions") -> bytes:
    """``{key: result}``: ``predictions`` as returned (or an explain's ``explanations``); a dict of columns
    becomes one object per instance.

    TypeError or ValueError says what in the result JSON cannot carry. Floats that are not finite (NaN,
    infinities) become ``null``, as JSON has no such numbers.
    """
    if isinstance(result, dict):
        lengths = {name: _rows(column) for name, column in result.items()}
        if len(set(lengths.values())) > 1 or None in lengths.values():
            described = ", ".join(f"{name!r}: {'no rows' if length is None else length}"
                                  for name, length in lengths.items())
            raise ValueError(f"columns of different lengths ({described}), where each row is an instance")
        names = list(result)
        result = [dict(zip(names, row)) for row in zip(*(result[name] for name in names))]
    try:
        return jsonio.dumps({key: result})
    except TypeError as exc:
        raise TypeError(f"{key} that JSON cannot carry: {exc}") from None


def _rows(column: object) -> Optional[int]:
    if isinstance(column, (list, tuple)) or (isinstance(column, np.ndarray) and column.ndim > 0):
        return len(column)
    return None

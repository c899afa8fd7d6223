"""JSON in and out, with NumPy arrays written natively (orjson)."""

from typing import Union

import numpy as np
import orjson

from ..errors import InvalidInput


# What a request body arrives as: bytes, a bytearray read whole, or a view of part of one.
Buffer = Union[bytes, bytearray, memoryview]


def loads(body: Buffer) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


def load_object(body: Buffer) -> dict:
    payload = loads(body)
    if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object, not {type(payload).__name__}")
    return payload


def dumps(payload: object) -> bytes:
    """JSON; TypeError for what JSON cannot carry. NaN and the infinities become ``null``, as orjson writes them."""
    return orjson.dumps(payload, default=_fallback, option=orjson.OPT_SERIALIZE_NUMPY)


def _fallback(value):
    """What orjson cannot write natively: object arrays, other NumPy types, bytes."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

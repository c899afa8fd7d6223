"""KServe's V1 protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""

from ..errors import InvalidInput
from ..request import InferenceRequest
from . import jsonio


def decode_request(body: bytes) -> InferenceRequest:
    payload = jsonio.load_object(body)
    key = "instances" if "instances" in payload else "inputs"
    instances = payload.get(key)
    if not isinstance(instances, list):
        raise InvalidInput("the request needs 'instances' (or 'inputs') as a JSON list")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    return InferenceRequest(protocol="v1", instances=instances, parameters=parameters or {})


def encode_response(result: object) -> bytes:
    """``predictions`` as returned; a dict of outputs becomes one object per instance."""
    if isinstance(result, dict):
        names = list(result)
        rows = zip(*(result[name] for name in names))
        result = [dict(zip(names, row)) for row in rows]
    return jsonio.dumps({"predictions": result})

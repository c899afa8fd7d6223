"""The Open Inference Protocol (KServe V2) over REST, with the binary tensor extension.

A request body is JSON, optionally followed by raw tensor bytes: then the
``Inference-Header-Content-Length`` header gives the JSON part's length and each
binary input says its ``binary_data_size``. Outputs come back as binary when the
request asks for it, per output (``binary_data``) or for all (``binary_data_output``).
"""

from typing import Any, Callable, Optional

import numpy as np

from .. import __version__
from ..errors import InvalidInput, PluginError, quoted, quoted_names
from ..request import InferenceRequest
from . import jsonio, shared_memory, tensors
from .limits import DEFAULT_LIMITS, RequestLimits

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
# The parameters of the repository extension's load and unload requests that this server takes, and their
# types. No model here depends on another: unloading its dependents too is unloading it alone.
LOAD_PARAMETERS: dict[str, type] = {}
UNLOAD_PARAMETERS = {"unload_dependents": bool}
# A model's state in the repository index, as Triton names them.
READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


def server_metadata(more_extensions: tuple[str, ...] = ()) -> dict:
    return {"name": "modelhost", "version": __version__, "extensions": [*EXTENSIONS, *more_extensions]}


def model_metadata(name: str, versions: list[str], declared: dict) -> dict:
    return {
        "name": name,
        "versions": versions,
        "platform": declared.get("platform", ""),
        "inputs": declared.get("inputs", []),
        "outputs": declared.get("outputs", []),
    }


def decode_repository_index_request(body: bytes) -> bool:
    """Whether an index request asks for the ready models only."""
    return bool(_optional(_repository_request(body), "ready", bool))


def check_repository_change_request(body: bytes, accepted: dict[str, type]) -> None:
    """A load or unload request: its 'parameters', if any, must be ones this server takes."""
    check_repository_parameters(_optional(_repository_request(body), "parameters", dict) or {}, accepted)


def check_repository_parameters(parameters: dict, accepted: dict[str, type]) -> None:
    """A load's or unload's parameters, over REST or gRPC: InvalidInput for one this server does not take."""
    for key in parameters:
        if key not in accepted:
            raise InvalidInput(f"parameter {quoted(key)} is not supported here")
        _optional(parameters, key, accepted[key])


def _repository_request(body: bytes) -> dict:
    # Clients send the request object, or no body at all (Triton's client indexes with none).
    return jsonio.load_object(body) if body else {}


def decode_request(body: jsonio.Buffer, header_length: Optional[str],
                   limits: RequestLimits = DEFAULT_LIMITS) -> InferenceRequest:
    json_part, binary = split_binary(body, header_length)
    payload = jsonio.load_object(json_part)
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    limits.check_inputs(len(raw_inputs))
    parameters = _optional(payload, "parameters", dict) or {}
    limits.check_parameters(len(parameters), "the request")
    inputs, input_parameters = read_tensors(raw_inputs, binary, limits)
    requested_outputs = _requested_outputs(payload, limits)
    return InferenceRequest(
        protocol="v2",
        inputs=inputs,
        input_parameters=input_parameters,
        id=_optional(payload, "id", str),
        parameters=parameters,
        requested_outputs=requested_outputs,
        output_places=shared_memory.output_places(requested_outputs) if requested_outputs else {},
    )


def read_tensors(described: list, binary: memoryview,
                 limits: RequestLimits = DEFAULT_LIMITS) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Tensors by name from their JSON descriptions, with their data inline, in ``binary``, or in a shared-memory
    region (a ``shared_memory.SharedInput``), and each one's parameters; InvalidInput says what does not add up.
    A request's inputs, or (to a client) a response's outputs.
    """
    arrays: dict[str, np.ndarray] = {}
    parameters_by_name: dict[str, dict] = {}
    offset = 0
    for raw in described:
        name, datatype, shape, parameters = _input_header(raw)
        if name in arrays:
            raise InvalidInput(f"input {quoted(name)} is given twice")
        limits.check_parameters(len(parameters), f"input {quoted(name)}")
        size = parameters.get("binary_data_size")
        in_region = shared_memory.shared_input(name, datatype, shape, parameters, "data" in raw) if parameters else None
        if in_region is not None:
            arrays[name] = in_region  # type: ignore[assignment]  # read where the model runs
        elif size is None:
            arrays[name] = tensors.from_json(name, datatype, shape, raw.get("data"), limits)
        else:
            if "data" in raw:  # Triton refuses it too: which of the two would be the tensor?
                raise InvalidInput(f"input {quoted(name)} has both 'data' and binary_data_size; give one")
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {quoted(name)}: binary_data_size {quoted(size)} runs past the body")
            arrays[name] = tensors.from_binary(name, datatype, shape, binary[offset:offset + size], limits)
            offset += size
        parameters_by_name[name] = parameters
    if offset != len(binary):
        raise InvalidInput(f"the body has {len(binary) - offset} bytes that no input claims")
    return arrays, parameters_by_name


def write_tensors(arrays: dict[str, np.ndarray], as_binary: Callable[[str], bool],
                  parameters: dict[str, dict[str, Any]]) -> tuple[list[dict[str, object]], list[bytes]]:
    """JSON descriptions of tensors (with ``parameters`` of their own), their data inline, or, for those
    ``as_binary`` names, in the chunks that follow the JSON. PluginError for BYTES asked for as JSON that are
    not text."""
    described: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for name, array in arrays.items():
        if isinstance(array, shared_memory.SharedOutput):
            described.append({"name": name, "datatype": array.datatype, "shape": list(array.shape),
                              "parameters": {**parameters.get(name, {}), **array.parameters()}})
            continue
        datatype = tensors.datatype_of(array)
        tensor: dict[str, object] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        its_own = parameters.get(name)
        if its_own:
            tensor["parameters"] = its_own
        if as_binary(name):
            chunks.append(tensors.to_binary(datatype, array))
            tensor["parameters"] = {**(its_own or {}), "binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = tensors.to_json_data(name, datatype, array)
        described.append(tensor)
    return described, chunks


def split_binary(body: jsonio.Buffer, header_length: Optional[str]) -> tuple[jsonio.Buffer, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {quoted(header_length)}, the body has {len(body)} bytes")
    view = memoryview(body)
    return view[:length], view[length:]


def _input_header(raw: object) -> tuple[str, str, tuple[int, ...], dict]:
    if not isinstance(raw, dict):
        raise InvalidInput("each input must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidInput("each input needs a string 'name'")
    datatype = tensors.check_datatype(name, raw.get("datatype"))
    parameters = _optional(raw, "parameters", dict) or {}
    return name, datatype, tensors.check_shape(name, raw.get("shape")), parameters


def _requested_outputs(payload: dict, limits: RequestLimits) -> Optional[dict[str, dict]]:
    outputs = _optional(payload, "outputs", list)
    if outputs is None:
        return None
    limits.check_inputs(len(outputs), "requested outputs")
    requested = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInput("each requested output needs a string 'name'")
        parameters = _optional(output, "parameters", dict) or {}
        limits.check_parameters(len(parameters), f"output {quoted(output['name'])}")
        requested[output["name"]] = parameters
    return requested


def _optional(payload: dict, key: str, kind: type):
    value = payload.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidInput(f"{key!r} must be a JSON {'object' if kind is dict else kind.__name__}")
    return value


def output_tensors(result: object, declared: dict) -> dict[str, np.ndarray]:
    """What a plugin returned, as output tensors by name; ValueError says what in it is no tensor.

    A dict names its outputs; a bare array is the one output the model declares, or ``output-0``.
    """
    if isinstance(result, dict):
        items = list(result.items())
    else:
        outputs = declared.get("outputs", [])
        items = [(outputs[0]["name"] if len(outputs) == 1 else "output-0", result)]
    named = {}
    for name, value in items:
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise ValueError(f"output {name!r}, which is not an array: {exc}") from None
        tensors.check_output(str(name), array)
        named[str(name)] = array
    return named


def response_parameters(parameters: dict, output_parameters: dict,
                        outputs: object) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A plugin's response and per-output parameters, checked: JSON objects of JSON values, for outputs it gave.

    ValueError or TypeError says what is wrong.
    """
    if not isinstance(parameters, dict) or not isinstance(output_parameters, dict):
        raise ValueError("parameters that are not dicts")
    jsonio.dumps(parameters)  # TypeError for what JSON cannot carry
    for name, its_own in output_parameters.items():
        if not isinstance(outputs, dict) or name not in outputs or not isinstance(its_own, dict):
            raise ValueError(f"parameters for output {name!r}, which it did not give as a dict's entry")
        if "binary_data_size" in its_own:
            raise ValueError(f"output {name!r}'s parameter binary_data_size, which is the server's to set")
        jsonio.dumps(its_own)
    return parameters, output_parameters


def requested(outputs: dict[str, np.ndarray], request: InferenceRequest, model_name: str) -> dict[str, np.ndarray]:
    """The outputs the request asked for (all, when it named none); InvalidInput names one the model lacks."""
    wanted = request.requested_outputs
    if wanted is None:
        return outputs
    unknown = [name for name in wanted if name not in outputs]
    if unknown:
        raise InvalidInput(f"model {quoted(model_name)} has no output {quoted_names(unknown)} "
                           f"(it gives {quoted_names(list(outputs), 10)})")
    return {name: outputs[name] for name in wanted}


def encode_response(outputs: dict[str, np.ndarray], request: InferenceRequest, model_name: str,
                    model_version: Optional[str], parameters: Optional[dict[str, Any]] = None,
                    output_parameters: Optional[dict[str, dict[str, Any]]] = None) -> tuple[bytes, dict]:
    """The response body and its headers: JSON, or JSON followed by binary outputs.

    ``outputs`` come from ``output_tensors``. Floats that are not finite (NaN, infinities) are ``null`` in JSON
    data, as JSON has no such numbers; binary data carries them exactly.
    """
    wanted = request.requested_outputs
    outputs = requested(outputs, request, model_name)
    binary_default = bool(request.parameters.get("binary_data_output", False))
    try:
        described, chunks = write_tensors(
            outputs, lambda name: (wanted or {}).get(name, {}).get("binary_data", binary_default),
            output_parameters or {})
    except PluginError as error:
        raise PluginError(f"model {model_name!r}: {error.message}") from None
    response: dict[str, object] = {"model_name": model_name, "outputs": described}
    if parameters:
        response["parameters"] = parameters
    if model_version is not None:
        response["model_version"] = model_version
    if request.id is not None:
        response["id"] = request.id
    header = jsonio.dumps(response)
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *chunks]), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }

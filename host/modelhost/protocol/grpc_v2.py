"""The Open Inference Protocol over gRPC: its messages, and the codec between them and the host's requests.

The messages are built from ``inference.proto`` in a descriptor pool of their
own, not protobuf's default one: the clients a test or a transformer runs in
the same process (tritonclient, kserve) register ``inference.*`` messages of
their own there, and two definitions of one name cannot share a pool. Pure:
no I/O.
"""

import functools
import math
from types import SimpleNamespace
from typing import Any, Optional

import grpc
import numpy as np
from google.protobuf import descriptor_pool, message_factory

from ..errors import InvalidInput, PluginError, quoted
from ..request import InferenceRequest
from . import grpc_descriptor, shared_memory, tensors
from .limits import DEFAULT_LIMITS, RequestLimits
from .v2 import requested

SERVICE = "inference.GRPCInferenceService"
# Triton's parameters of ModelStreamInfer: whether a response is its request's last, and a request's asking for
# an empty last response after a decoupled model's (generating model's) pieces.
FINAL, EMPTY_FINAL = "triton_final_response", "triton_enable_empty_final_response"
# The typed contents field that carries each datatype; FP16 travels only as raw contents.
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
INT64_MAX = 2**63 - 1
# The gRPC status that answers each HTTP status the host's errors carry (else INTERNAL), and the other way.
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
         501: grpc.StatusCode.UNIMPLEMENTED, 502: grpc.StatusCode.UNAVAILABLE, 503: grpc.StatusCode.UNAVAILABLE,
         504: grpc.StatusCode.DEADLINE_EXCEEDED}
STATUSES = {**{code: status for status, code in CODES.items()}, grpc.StatusCode.UNIMPLEMENTED: 501,
            grpc.StatusCode.RESOURCE_EXHAUSTED: 503, grpc.StatusCode.UNAVAILABLE: 503,
            grpc.StatusCode.PERMISSION_DENIED: 403}


@functools.cache
def messages() -> SimpleNamespace:
    """The message classes by name: ``messages().ModelInferRequest``."""
    pool = descriptor_pool.DescriptorPool()
    described = pool.AddSerializedFile(grpc_descriptor.FILE)
    return SimpleNamespace(**{name: message_factory.GetMessageClass(descriptor)
                              for name, descriptor in described.message_types_by_name.items()})


def parameter_value(parameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def parameters_of(field) -> dict[str, Any]:
    return {name: parameter_value(parameter) for name, parameter in field.items()}


def set_parameters(field, values: dict[str, Any], whose: str) -> None:
    """Fill a message's parameter map; PluginError for a value InferParameter cannot carry (a list, an object)."""
    for name, value in values.items():
        parameter = field[name]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int) and -INT64_MAX - 1 <= value <= INT64_MAX:
            parameter.int64_param = value
        elif isinstance(value, int) and 0 <= value < 2**64:
            parameter.uint64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            raise PluginError(f"{whose} parameter {name!r} is a {type(value).__name__}, which gRPC's "
                              "InferParameter cannot carry (bool, integer, float or string)")


def decode_infer_request(message, limits: RequestLimits = DEFAULT_LIMITS) -> InferenceRequest:
    """A ModelInferRequest as the host's request; InvalidInput says what in it does not add up.

    ``raw_input_contents`` hold the inputs' data in order, but for those in shared memory, which have none there
    (as tritonclient sends them).
    """
    raw = message.raw_input_contents
    if not message.inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    limits.check_inputs(len(message.inputs))
    limits.check_inputs(len(message.outputs), "requested outputs")
    inputs: dict[str, np.ndarray] = {}
    input_parameters: dict[str, dict[str, Any]] = {}
    taken = 0  # raw_input_contents read so far
    for tensor in message.inputs:
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input {quoted(name)} is given twice")
        datatype = tensors.check_datatype(name, tensor.datatype)
        shape = tensors.check_shape(name, list(tensor.shape))
        input_parameters[name] = checked_parameters(tensor.parameters, f"input {quoted(name)}", limits)
        in_region = shared_memory.shared_input(name, datatype, shape, input_parameters[name],
                                               bool(tensor.contents.ListFields()))
        if in_region is not None:
            inputs[name] = in_region  # type: ignore[assignment]  # read where the model runs
        elif raw:
            if tensor.contents.ListFields():  # Triton refuses it too: which of the two would be the tensor?
                raise InvalidInput(f"input {quoted(name)} has both contents and raw_input_contents; give one")
            if taken < len(raw):  # a copy, so that a plugin's arrays are writable, as over HTTP
                inputs[name] = tensors.from_binary(name, datatype, shape, memoryview(bytearray(raw[taken])), limits)
            taken += 1
        else:
            inputs[name] = from_contents(name, datatype, shape, tensor.contents, limits)
    if raw and taken != len(raw):
        raise InvalidInput(f"the request has {len(raw)} raw_input_contents for {taken} inputs not in shared memory")
    requested_outputs = {output.name: checked_parameters(output.parameters, f"output {quoted(output.name)}", limits)
                         for output in message.outputs} or None
    return InferenceRequest(
        protocol="v2",
        inputs=inputs,
        input_parameters=input_parameters,
        id=message.id or None,
        parameters=checked_parameters(message.parameters, "the request", limits),
        requested_outputs=requested_outputs,
        output_places=shared_memory.output_places(requested_outputs),
    )


def checked_parameters(field, whose: str, limits: RequestLimits) -> dict[str, Any]:
    limits.check_parameters(len(field), whose)
    return parameters_of(field)


def from_contents(name: str, datatype: str, shape: tuple[int, ...], contents,
                  limits: RequestLimits = DEFAULT_LIMITS) -> np.ndarray:
    field = CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {quoted(name)}: {datatype} has no typed contents; send it in raw_input_contents")
    given = [descriptor.name for descriptor, _ in contents.ListFields()]
    if given and given != [field]:
        raise InvalidInput(f"input {quoted(name)}: {datatype} goes in {field}, its contents hold {', '.join(given)}")
    count = math.prod(shape)
    if datatype == "BYTES":
        limits.check_bytes_elements(name, count)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"input {quoted(name)}: shape {list(shape)} holds {count} elements, its {field} has "
                           f"{len(values)}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return tensors.shaped(name, array, shape)
    try:
        return tensors.shaped(name, np.array(values, dtype=tensors.DTYPES[datatype]), shape)
    except OverflowError:
        raise InvalidInput(f"input {quoted(name)}: a value of its {field} is out of {datatype}'s range") from None


def encode_infer_response(outputs: dict[str, np.ndarray], request: InferenceRequest, model_name: str,
                          model_version: Optional[str], parameters: Optional[dict[str, Any]] = None,
                          output_parameters: Optional[dict[str, dict[str, Any]]] = None):
    """A ModelInferResponse with each output's data in ``raw_output_contents``, as Triton answers."""
    response = messages().ModelInferResponse(model_name=model_name, model_version=model_version or "",
                                             id=request.id or "")
    for name, array in requested(outputs, request, model_name).items():
        its_own = (output_parameters or {}).get(name, {})
        if isinstance(array, shared_memory.SharedOutput):  # its data in the region; an empty entry keeps the order
            tensor = response.outputs.add(name=name, datatype=array.datatype, shape=array.shape)
            set_parameters(tensor.parameters, {**its_own, **array.parameters()}, f"output {name!r}'s")
            response.raw_output_contents.append(b"")
            continue
        datatype = tensors.datatype_of(array)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        set_parameters(tensor.parameters, its_own, f"output {name!r}'s")
        response.raw_output_contents.append(tensors.to_binary(datatype, array))
    set_parameters(response.parameters, parameters or {}, "the response's")
    return response


def encode_infer_request(model_name: str, inputs: dict[str, np.ndarray]):
    """A ModelInferRequest with each input's data in ``raw_input_contents``, as Triton's client sends it."""
    request = messages().ModelInferRequest(model_name=model_name)
    for name, array in inputs.items():
        datatype = tensors.datatype_of(array)
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(tensors.to_binary(datatype, array))
    return request


def decode_infer_response(message) -> dict[str, np.ndarray]:
    """A ModelInferResponse's outputs by name, from raw or typed contents; InvalidInput says what does not add up."""
    raw = message.raw_output_contents
    if raw and len(raw) != len(message.outputs):
        raise InvalidInput(f"the response has {len(raw)} raw_output_contents for {len(message.outputs)} outputs")
    outputs = {}
    for index, tensor in enumerate(message.outputs):
        datatype = tensors.check_datatype(tensor.name, tensor.datatype)
        shape = tensors.check_shape(tensor.name, list(tensor.shape))
        outputs[tensor.name] = tensors.from_binary(tensor.name, datatype, shape, memoryview(raw[index])) if raw \
            else from_contents(tensor.name, datatype, shape, tensor.contents)
    return outputs


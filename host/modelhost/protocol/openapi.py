"""The OpenAPI 3.1 document of every route in ``app.make_app``: KServe V1 and the Open Inference Protocol (V2).

Schema names follow the KServe and Open Inference Protocol REST specs. The
``name`` path parameter enumerates the models this server serves, so that a
client generated from the document, or a fuzzer, knows which names answer;
any other name gets 404. The model repository's load and unload take any
name, since a model installed but not served can be loaded.
"""

import re
from typing import Optional

from .. import __version__
from . import openapi_generate, tensors, v2
from .v2 import LOADING, READY, UNAVAILABLE, UNLOADING

ERRORS = {
    400: "Malformed request: bad JSON, a shape or datatype that does not match the data, or refused by the model",
    404: "No such model or path",
    413: "The request body is larger than --max_buffer_size",
    500: "The model's hook raised, or returned something the protocol cannot carry",
    503: "The model is not ready",
    501: "The model has no explain hook",
    504: "The model's hooks ran past --timeout",
}
MODEL_ERRORS = [400, 404, 413, 500, 503, 504]
REPOSITORY_ERRORS = {
    400: "Malformed request, or a parameter this server does not take; on load, why the model cannot load",
    404: "No model of that name is installed",
    413: ERRORS[413],
    503: "The server is shutting down",
}
REPOSITORY = "/v2/repository"
PATH_PARAMETER = re.compile(r"\{(\w+)\}")
V1_EXAMPLE = {"instances": [[1.0, 2.0], [3.0, 4.0]]}
V2_EXAMPLE = {"id": "1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}
STRING, BOOLEAN, PARAMETERS = {"type": "string"}, {"type": "boolean"}, {"type": "object"}
INTEGER = {"type": "integer"}


def openapi_document(model_names: list[str], docs_pages: bool = False) -> dict:
    """``docs_pages``: the browsable pages (``http.docs``) are served, and listed."""
    paths = {
        "/": _get("live", "Liveness (KServe)", "Alive"),
        "/v1/models": _get("v1ListModels", "The served models", "V1ModelList"),
        "/v1/models/{name}": _get(
            "v1ModelReady", "Whether a model is ready", "ModelReadyResponse", [404], not_ready=True
        ),
        "/v1/models/{name}:predict": _post(
            "v1Predict", "Predict (KServe V1)", "V1PredictRequest", V1_EXAMPLE, "V1PredictResponse"
        ),
        "/v1/models/{name}:explain": _post(
            "v1Explain", "Explain the model's predictions (KServe V1)", "V1PredictRequest", V1_EXAMPLE,
            "V1ExplainResponse", errors=(501,),
        ),
        "/v2": _get("v2ServerMetadata", "Server metadata", "ServerMetadataResponse"),
        "/v2/health/live": _get("v2ServerLive", "Server liveness", "ServerLiveResponse"),
        "/v2/health/ready": _get(
            "v2ServerReady", "Whether every model is ready", "ServerReadyResponse", not_ready=True
        ),
        f"{REPOSITORY}/index": _repository_post(
            "v2RepositoryIndex", "Every model known here, served or not", "RepositoryIndexRequest",
            "RepositoryIndexResponse",
        ),
        f"{REPOSITORY}/models/{{name}}/load": _repository_post(
            "v2RepositoryLoad", "Load a model, or upgrade a served one to the version installed now",
            "RepositoryLoadRequest", "RepositoryChangeResponse", errors=REPOSITORY_ERRORS,
        ),
        f"{REPOSITORY}/models/{{name}}/unload": _repository_post(
            "v2RepositoryUnload", "Stop serving a model", "RepositoryUnloadRequest", "RepositoryChangeResponse",
            errors=REPOSITORY_ERRORS,
        ),
        "/v2/models/stats": _get("v2ModelStatisticsAll", "Every served model's statistics (Triton's statistics "
                                 "extension)", "ModelStatisticsResponse"),
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "responses": {
            "200": _response("The Prometheus text format", STRING, media_type="text/plain")}}},
        "/openapi.json": _get("openapi", "This document", "OpenAPIDocument"),
    }
    for prefix, suffix in [("/v2/models/{name}", ""), ("/v2/models/{name}/versions/{version}", "Version")]:
        paths[prefix] = _get(f"v2ModelMetadata{suffix}", "Model metadata", "MetadataModelResponse", [404, 503])
        paths[f"{prefix}/ready"] = _get(
            f"v2ModelReady{suffix}", "Whether a model is ready", "ModelReadyResponse", [404], not_ready=True
        )
        paths[f"{prefix}/stats"] = _get(
            f"v2ModelStatistics{suffix}", "A model's statistics (Triton's statistics extension)",
            "ModelStatisticsResponse", [404])
        paths[f"{prefix}/config"] = _get(
            f"v2ModelConfig{suffix}", "A model's configuration (Triton's model configuration extension)",
            "ModelConfigResponse", [404, 503])
        paths[f"{prefix}/infer"] = _post(
            f"v2ModelInfer{suffix}", "Inference (Open Inference Protocol)", "InferenceRequest", V2_EXAMPLE,
            "InferenceResponse", binary=True,
        )
    paths.update(openapi_generate.paths(model_names))
    if docs_pages:
        paths.update(_docs_paths())
    for path, item in paths.items():
        # A load may name a model that is installed but not served yet: any name may be sent there.
        names = None if path.startswith(REPOSITORY) else model_names
        parameters = [_path_parameter(name, names) for name in PATH_PARAMETER.findall(path)]
        if parameters:
            item["parameters"] = parameters
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelhost", "version": __version__},
        "paths": paths,
        "components": {"schemas": {**_schemas(), **openapi_generate.schemas(model_names)}},
    }


def _docs_paths() -> dict:
    page = _response("The page (Swagger UI)", STRING, media_type="text/html")
    return {
        "/docs": {"get": {"operationId": "docs", "summary": "This API as a page where requests can be tried",
                          "responses": {"200": page}}},
        "/docs/static/{asset_name}": {"get": {"operationId": "docsAsset", "summary": "The page's scripts and styles",
                                              "responses": {"200": {"description": "The asset"}, **_errors([404])}}},
        "/v2/models/{name}/docs": {"get": {"operationId": "v2ModelDocs", "summary": "A model's routes as a page, its "
                                           "inputs in the examples", "responses": {"200": page, **_errors([404])}}},
        "/v2/models/{name}/docs/openapi.json": _get("v2ModelOpenAPI", "A model's routes, as its page shows them",
                                                    "OpenAPIDocument", [404]),
    }


def _path_parameter(name: str, model_names: Optional[list[str]]) -> dict:
    # Tornado's routes: a model name has no '/' or ':', a version no '/'.
    schema: dict[str, object]
    if name != "name":
        schema = {"type": "string", "pattern": "^[^/]+$"}
    elif model_names is None:
        schema = {"type": "string", "pattern": "^[^/:]+$"}
    else:
        # The first model is the example, so that a "Try it out" on the page starts with a name that answers.
        schema = {"type": "string", "enum": model_names, **({"example": model_names[0]} if model_names else {})}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _get(operation_id: str, summary: str, answer: str, errors=(), not_ready: bool = False) -> dict:
    responses = {"200": _response("OK", _ref(answer))}
    if not_ready:  # a readiness check answers 503 with the same body, ready false
        responses["503"] = _response("Not ready", _ref(answer))
    return {"get": {"operationId": operation_id, "summary": summary, "responses": {**responses, **_errors(errors)}}}


def _post(operation_id: str, summary: str, request: str, example: dict, answer: str, binary: bool = False,
          errors: tuple = ()) -> dict:
    """A predict, explain or infer operation; ``binary`` adds the binary tensor extension of V2, ``errors``
    statuses of its own."""
    media = {"application/json": {"schema": _ref(request), "example": example}}
    ok = _response("OK", _ref(answer))
    operation: dict[str, object] = {"operationId": operation_id, "summary": summary}
    if binary:
        binary_body = {"schema": {"type": "string", "format": "binary"}}
        media["application/octet-stream"] = binary_body
        ok["content"]["application/octet-stream"] = binary_body
        ok["headers"] = {v2.HEADER_LENGTH: {"description": "Length of the JSON part", "schema": {"type": "string"}}}
        operation["parameters"] = [{
            "name": v2.HEADER_LENGTH, "in": "header", "required": False,
            "description": "With binary tensor data: the length of the JSON part that starts the body",
            "schema": {"type": "integer", "minimum": 0},
        }]
    operation["requestBody"] = {"required": True, "content": media}
    operation["responses"] = {"200": ok, **_errors(sorted([*MODEL_ERRORS, *errors]))}
    return {"post": operation}


def _repository_post(operation_id: str, summary: str, request: str, answer: str, errors=(400, 413)) -> dict:
    """A request of the model repository extension; its body may be left out."""
    return {"post": {
        "operationId": operation_id, "summary": summary,
        "requestBody": {"required": False, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {"200": _response("OK", _ref(answer)), **_errors(errors, REPOSITORY_ERRORS)},
    }}


def _errors(statuses, descriptions: dict = ERRORS) -> dict:
    return {str(status): _response(descriptions[status], _ref("ErrorResponse")) for status in statuses}


def _response(description: str, schema: dict, media_type: str = "application/json") -> dict:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _closed_object(**properties) -> dict:
    """Parameters of which the server takes only these: any other is refused."""
    return {**_object([], **properties), "additionalProperties": False}


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


def _or_null(schema: dict) -> dict:
    """An optional member that may also be null: the server takes null as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def _tensor(**properties) -> dict:
    """A tensor as metadata declares it and a response carries it (request inputs are stricter)."""
    return _object(["name", "datatype", "shape"], name=STRING, datatype=STRING, shape=_array({"type": "integer"}),
                   **properties)


def _schemas() -> dict:
    return {
        "ErrorResponse": _object(["error"], error=STRING),
        "Alive": _object(["status"], status={"const": "alive"}),
        "ModelReadyResponse": _object(["name", "ready"], name=STRING, ready=BOOLEAN),
        "ModelStatisticsResponse": _object(["model_stats"], model_stats=_array(_object(
            ["name", "version", "inference_count", "execution_count", "inference_stats"], name=STRING,
            version=STRING, inference_count=INTEGER, execution_count=INTEGER, inference_stats=_object(
                ["success", "fail", "queue", "compute_input", "compute_infer", "compute_output"],
                **{stage: _ref("StatisticDuration") for stage in
                   ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")})))),
        "StatisticDuration": _object(["count", "ns"], count=INTEGER, ns=INTEGER),
        "ModelConfigResponse": _object(["name", "platform", "max_batch_size", "input", "output"], name=STRING,
                                       platform=STRING, max_batch_size=INTEGER, input=_array(_ref("ModelTensor")),
                                       output=_array(_ref("ModelTensor"))),
        "ModelTensor": _object(["name", "data_type", "dims"], name=STRING, data_type=STRING,
                               dims=_array(INTEGER)),
        "OpenAPIDocument": _object(["openapi", "info", "paths"]),
        "V1ModelList": _object(["models"], models=_array(STRING)),
        "V1PredictRequest": {  # 'instances', or 'inputs' when there are no 'instances'
            **_object([], parameters=_or_null(PARAMETERS)),
            "oneOf": [
                _object(["instances"], instances={"type": "array"}),
                {**_object(["inputs"], inputs={"type": "array"}), "not": {"required": ["instances"]}},
            ],
        },
        "V1PredictResponse": _object(["predictions"], predictions={}),
        "V1ExplainResponse": _object(["explanations"], explanations={}),
        "ServerMetadataResponse": _object(["name", "version", "extensions"], name=STRING, version=STRING,
                                          extensions=_array(STRING)),
        "ServerLiveResponse": _object(["live"], live=BOOLEAN),
        "ServerReadyResponse": _object(["ready"], ready=BOOLEAN),
        "MetadataModelResponse": _object(
            ["name", "platform", "inputs", "outputs"], name=STRING, versions=_array(STRING), platform=STRING,
            inputs=_array(_ref("MetadataTensor")), outputs=_array(_ref("MetadataTensor")),
        ),
        "MetadataTensor": _tensor(),
        "TensorData": _array({"anyOf": [{"type": ["boolean", "number", "string"]}, _ref("TensorData")]}),
        "RequestInput": _object(
            ["name", "shape", "datatype"], name=STRING, shape=_array({"type": "integer", "minimum": 0}),
            datatype=_ref("Datatype"), parameters=_or_null(_ref("InputParameters")),
            data=_ref("TensorData"),
        ),
        "Datatype": {"enum": [*tensors.DTYPES, "BYTES"]},
        "InputParameters": _object([], binary_data_size={"type": "integer", "minimum": 0}),
        "RequestOutput": _object(["name"], name=STRING, parameters=_or_null(_ref("OutputParameters"))),
        "OutputParameters": _object([], binary_data=BOOLEAN),
        "InferenceRequest": _object(
            ["inputs"], id=_or_null(STRING), parameters=_or_null(_ref("InferenceParameters")),
            inputs={**_array(_ref("RequestInput")), "minItems": 1}, outputs=_or_null(_array(_ref("RequestOutput"))),
        ),
        "InferenceParameters": _object([], binary_data_output=BOOLEAN),
        "RepositoryIndexRequest": _object([], ready=_or_null(BOOLEAN)),
        "RepositoryIndexResponse": _array(_object(
            ["name", "state", "reason"], name=STRING, version=STRING,
            state={"enum": [READY, UNAVAILABLE, LOADING, UNLOADING]}, reason=STRING,
        )),
        "RepositoryLoadRequest": _object([], parameters=_or_null(_closed_object())),
        "RepositoryUnloadRequest": _object(
            [], parameters=_or_null(_closed_object(unload_dependents=_or_null(BOOLEAN)))
        ),
        "RepositoryChangeResponse": _object([]),
        "ResponseOutput": _tensor(parameters=PARAMETERS, data=_ref("TensorData")),
        "InferenceResponse": _object(
            ["model_name", "outputs"], model_name=STRING, model_version=STRING, id=STRING,
            parameters=PARAMETERS, outputs=_array(_ref("ResponseOutput")),
        ),
    }

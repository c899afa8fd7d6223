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
from . import openapi_generate, openapi_shared_memory, tensors
from .openapi_parts import (
    BOOLEAN, ERRORS, INTEGER, PARAMETERS, STRING, array_of, error_responses, get, object_of, post, ref, response,
)
from .v2 import LOADING, READY, UNAVAILABLE, UNLOADING

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


def openapi_document(model_names: list[str], docs_pages: bool = False) -> dict:
    """``docs_pages``: the browsable pages (``http.docs``) are served, and listed."""
    paths = {
        "/": get("live", "Liveness (KServe)", "Alive"),
        "/v1/models": get("v1ListModels", "The served models", "V1ModelList"),
        "/v1/models/{name}": get(
            "v1ModelReady", "Whether a model is ready", "ModelReadyResponse", [404], not_ready=True
        ),
        "/v1/models/{name}:predict": post(
            "v1Predict", "Predict (KServe V1)", "V1PredictRequest", V1_EXAMPLE, "V1PredictResponse"
        ),
        "/v1/models/{name}:explain": post(
            "v1Explain", "Explain the model's predictions (KServe V1)", "V1PredictRequest", V1_EXAMPLE,
            "V1ExplainResponse", errors=(501,),
        ),
        "/v2": get("v2ServerMetadata", "Server metadata", "ServerMetadataResponse"),
        "/v2/health/live": get("v2ServerLive", "Server liveness", "ServerLiveResponse"),
        "/v2/health/ready": get(
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
        "/v2/models/stats": get("v2ModelStatisticsAll", "Every served model's statistics (Triton's statistics "
                                "extension)", "ModelStatisticsResponse"),
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "responses": {
            "200": response("The Prometheus text format", STRING, media_type="text/plain")}}},
        "/openapi.json": get("openapi", "This document", "OpenAPIDocument"),
    }
    for prefix, suffix in [("/v2/models/{name}", ""), ("/v2/models/{name}/versions/{version}", "Version")]:
        paths[prefix] = get(f"v2ModelMetadata{suffix}", "Model metadata", "MetadataModelResponse", [404, 503])
        paths[f"{prefix}/ready"] = get(
            f"v2ModelReady{suffix}", "Whether a model is ready", "ModelReadyResponse", [404], not_ready=True
        )
        paths[f"{prefix}/stats"] = get(
            f"v2ModelStatistics{suffix}", "A model's statistics (Triton's statistics extension)",
            "ModelStatisticsResponse", [404])
        paths[f"{prefix}/config"] = get(
            f"v2ModelConfig{suffix}", "A model's configuration (Triton's model configuration extension)",
            "ModelConfigResponse", [404, 503])
        paths[f"{prefix}/infer"] = post(
            f"v2ModelInfer{suffix}", "Inference (Open Inference Protocol)", "InferenceRequest", V2_EXAMPLE,
            "InferenceResponse", binary=True,
        )
    paths.update(openapi_generate.paths(model_names))
    paths.update(openapi_shared_memory.paths())
    if docs_pages:
        paths.update(_docs_paths())
    for path, item in paths.items():
        # A load may name a model that is installed but not served yet: any name may be sent there.
        names = None if path.startswith((REPOSITORY, openapi_shared_memory.SYSTEM, openapi_shared_memory.CUDA)) \
            else model_names
        parameters = [_path_parameter(name, names) for name in PATH_PARAMETER.findall(path)]
        if parameters:
            item["parameters"] = parameters
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelhost", "version": __version__},
        "paths": paths,
        "components": {"schemas": {**_schemas(), **openapi_generate.schemas(model_names),
                                   **openapi_shared_memory.schemas()}},
    }


def _docs_paths() -> dict:
    page = response("The page (Swagger UI)", STRING, media_type="text/html")
    return {
        "/docs": {"get": {"operationId": "docs", "summary": "This API as a page where requests can be tried",
                          "responses": {"200": page}}},
        "/docs/static/{asset_name}": {"get": {
            "operationId": "docsAsset", "summary": "The page's scripts and styles",
            "responses": {"200": {"description": "The asset"}, **error_responses([404])}}},
        "/v2/models/{name}/docs": {"get": {
            "operationId": "v2ModelDocs", "summary": "A model's routes as a page, its inputs in the examples",
            "responses": {"200": page, **error_responses([404])}}},
        "/v2/models/{name}/docs/openapi.json": get("v2ModelOpenAPI", "A model's routes, as its page shows them",
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


def _repository_post(operation_id: str, summary: str, request: str, answer: str, errors=(400, 413)) -> dict:
    """A request of the model repository extension; its body may be left out."""
    return {"post": {
        "operationId": operation_id, "summary": summary,
        "requestBody": {"required": False, "content": {"application/json": {"schema": ref(request)}}},
        "responses": {"200": response("OK", ref(answer)), **error_responses(errors, REPOSITORY_ERRORS)},
    }}


def _closed_object(**properties) -> dict:
    """Parameters of which the server takes only these: any other is refused."""
    return {**object_of([], **properties), "additionalProperties": False}


def _or_null(schema: dict) -> dict:
    """An optional member that may also be null: the server takes null as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def _tensor(**properties) -> dict:
    """A tensor as metadata declares it and a response carries it (request inputs are stricter)."""
    return object_of(["name", "datatype", "shape"], name=STRING, datatype=STRING,
                     shape=array_of({"type": "integer"}), **properties)


def _schemas() -> dict:
    return {
        "ErrorResponse": object_of(["error"], error=STRING),
        "Alive": object_of(["status"], status={"const": "alive"}),
        "ModelReadyResponse": object_of(["name", "ready"], name=STRING, ready=BOOLEAN),
        "ModelStatisticsResponse": object_of(["model_stats"], model_stats=array_of(object_of(
            ["name", "version", "inference_count", "execution_count", "inference_stats"], name=STRING,
            version=STRING, inference_count=INTEGER, execution_count=INTEGER, inference_stats=object_of(
                ["success", "fail", "queue", "compute_input", "compute_infer", "compute_output"],
                **{stage: ref("StatisticDuration") for stage in
                   ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")})))),
        "StatisticDuration": object_of(["count", "ns"], count=INTEGER, ns=INTEGER),
        "ModelConfigResponse": object_of(["name", "platform", "max_batch_size", "input", "output"], name=STRING,
                                         platform=STRING, max_batch_size=INTEGER, input=array_of(ref("ModelTensor")),
                                         output=array_of(ref("ModelTensor"))),
        "ModelTensor": object_of(["name", "data_type", "dims"], name=STRING, data_type=STRING,
                                 dims=array_of(INTEGER)),
        "OpenAPIDocument": object_of(["openapi", "info", "paths"]),
        "V1ModelList": object_of(["models"], models=array_of(STRING)),
        "V1PredictRequest": {  # 'instances', or 'inputs' when there are no 'instances'
            **object_of([], parameters=_or_null(PARAMETERS)),
            "oneOf": [
                object_of(["instances"], instances={"type": "array"}),
                {**object_of(["inputs"], inputs={"type": "array"}), "not": {"required": ["instances"]}},
            ],
        },
        "V1PredictResponse": object_of(["predictions"], predictions={}),
        "V1ExplainResponse": object_of(["explanations"], explanations={}),
        "ServerMetadataResponse": object_of(["name", "version", "extensions"], name=STRING, version=STRING,
                                            extensions=array_of(STRING)),
        "ServerLiveResponse": object_of(["live"], live=BOOLEAN),
        "ServerReadyResponse": object_of(["ready"], ready=BOOLEAN),
        "MetadataModelResponse": object_of(
            ["name", "platform", "inputs", "outputs"], name=STRING, versions=array_of(STRING), platform=STRING,
            inputs=array_of(ref("MetadataTensor")), outputs=array_of(ref("MetadataTensor")),
        ),
        "MetadataTensor": _tensor(),
        "TensorData": array_of({"anyOf": [{"type": ["boolean", "number", "string"]}, ref("TensorData")]}),
        "RequestInput": object_of(
            ["name", "shape", "datatype"], name=STRING, shape=array_of({"type": "integer", "minimum": 0}),
            datatype=ref("Datatype"), parameters=_or_null(ref("InputParameters")),
            data=ref("TensorData"),
        ),
        "Datatype": {"enum": [*tensors.DTYPES, "BYTES"]},
        "InputParameters": object_of([], binary_data_size={"type": "integer", "minimum": 0},
                                     **openapi_shared_memory.tensor_parameters()),
        "RequestOutput": object_of(["name"], name=STRING, parameters=_or_null(ref("OutputParameters"))),
        "OutputParameters": object_of([], binary_data=BOOLEAN, **openapi_shared_memory.tensor_parameters()),
        "InferenceRequest": object_of(
            ["inputs"], id=_or_null(STRING), parameters=_or_null(ref("InferenceParameters")),
            inputs={**array_of(ref("RequestInput")), "minItems": 1}, outputs=_or_null(array_of(ref("RequestOutput"))),
        ),
        "InferenceParameters": object_of([], binary_data_output=BOOLEAN),
        "RepositoryIndexRequest": object_of([], ready=_or_null(BOOLEAN)),
        "RepositoryIndexResponse": array_of(object_of(
            ["name", "state", "reason"], name=STRING, version=STRING,
            state={"enum": [READY, UNAVAILABLE, LOADING, UNLOADING]}, reason=STRING,
        )),
        "RepositoryLoadRequest": object_of([], parameters=_or_null(_closed_object())),
        "RepositoryUnloadRequest": object_of(
            [], parameters=_or_null(_closed_object(unload_dependents=_or_null(BOOLEAN)))
        ),
        "RepositoryChangeResponse": object_of([]),
        "ResponseOutput": _tensor(parameters=PARAMETERS, data=ref("TensorData")),
        "InferenceResponse": object_of(
            ["model_name", "outputs"], model_name=STRING, model_version=STRING, id=STRING,
            parameters=PARAMETERS, outputs=array_of(ref("ResponseOutput")),
        ),
    }

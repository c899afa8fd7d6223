"""The pieces an OpenAPI document of the routes is made of: schemas, responses and operations.

``openapi`` (the whole document) and ``openapi_generate`` (its generating
routes) both build from these, so that neither imports the other's.
"""

from . import v2

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
STRING, BOOLEAN, PARAMETERS = {"type": "string"}, {"type": "boolean"}, {"type": "object"}
INTEGER = {"type": "integer"}


def get(operation_id: str, summary: str, answer: str, errors=(), not_ready: bool = False) -> dict:
    responses = {"200": response("OK", ref(answer))}
    if not_ready:  # a readiness check answers 503 with the same body, ready false
        responses["503"] = response("Not ready", ref(answer))
    return {"get": {"operationId": operation_id, "summary": summary,
                    "responses": {**responses, **error_responses(errors)}}}


def post(operation_id: str, summary: str, request: str, example: dict, answer: str, binary: bool = False,
         errors: tuple = ()) -> dict:
    """A predict, explain or infer operation; ``binary`` adds the binary tensor extension of V2, ``errors``
    statuses of its own."""
    media = {"application/json": {"schema": ref(request), "example": example}}
    ok = response("OK", ref(answer))
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
    operation["responses"] = {"200": ok, **error_responses(sorted([*MODEL_ERRORS, *errors]))}
    return {"post": operation}


def error_responses(statuses, descriptions: dict = ERRORS) -> dict:
    return {str(status): response(descriptions[status], ref("ErrorResponse")) for status in statuses}


def response(description: str, schema: dict, media_type: str = "application/json") -> dict:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def object_of(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def array_of(items: dict) -> dict:
    return {"type": "array", "items": items}

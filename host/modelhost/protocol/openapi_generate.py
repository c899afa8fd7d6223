"""The OpenAPI paths and schemas of the routes that generate: Triton's generate extension (``generate``,
``generate_stream``), MLServer's ``infer_stream``, and the OpenAI-compatible routes (``openai_routes``).

Part of ``openapi``'s document, in its style: ``openapi_document`` merges
``paths`` and ``schemas`` into it. A streamed answer is server-sent events:
OpenAPI 3.1 has no ``itemSchema`` (3.2's), so its ``schema`` is one event's,
as 3.2 and schemathesis read it, its ``data`` JSON whose ``contentSchema``
names what each event carries. An OpenAI-compatible route names its model in
the body: ``ModelName`` enumerates the served models, as the ``name`` path
parameter does, so that a fuzzer knows which names answer (any other: 404).
"""

from .openapi_parts import (
    BOOLEAN, ERRORS, INTEGER, MODEL_ERRORS, PARAMETERS, STRING, array_of, object_of, post, ref, response,
)
from .openai import routes_root
PROMPT = "Once upon a time"
GENERATE_EXAMPLE = {"text_input": PROMPT, "parameters": {"max_tokens": 16}}
INFER_STREAM_EXAMPLE = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [PROMPT]}],
                        "parameters": {"max_tokens": 16}}
EVENT_STREAM = "text/event-stream"
OPENAI_ERRORS = {  # where they differ from ERRORS
    400: "Malformed request: bad JSON, a field of the wrong type or out of its range (`param` names it), or "
         "refused by the model",
    404: "No such model (the body's `model`)",
    501: "The model has no generate hook",
}
NULL = {"type": "null"}
SCALAR = {"type": ["string", "number", "boolean"]}
NUMBERS = {"type": "array", "items": {"type": "number"}}


def paths(model_names: list[str]) -> dict:
    """The generate routes of each model (and version), and the OpenAI-compatible routes."""
    first = model_names[0] if model_names else "model"
    root = routes_root()
    found: dict[str, dict] = {}
    for prefix, suffix in [("/v2/models/{name}", ""), ("/v2/models/{name}/versions/{version}", "Version")]:
        found[f"{prefix}/generate"] = post(
            f"v2ModelGenerate{suffix}", "Generate (Triton's generate extension): the whole answer at once",
            "GenerateRequest", GENERATE_EXAMPLE, "GenerateResponse")
        found[f"{prefix}/generate_stream"] = _streamed(post(
            f"v2ModelGenerateStream{suffix}", "Generate, each piece as a server-sent event (Triton's generate "
            "extension)", "GenerateRequest", GENERATE_EXAMPLE, "GenerateResponse"), "GenerateResponse",
            "a GenerateResponse, or an ErrorResponse where the generation failed")
        found[f"{prefix}/infer_stream"] = _streamed(post(
            f"v2ModelInferStream{suffix}", "Inference, each piece as a server-sent event (MLServer's infer_stream)",
            "InferenceRequest", INFER_STREAM_EXAMPLE, "InferenceResponse", binary=True), "InferenceResponse",
            "an InferenceResponse, or an ErrorResponse where the generation failed")
    found.update({
        f"{root}/completions": _openai_post(
            "openaiCompletions", "Complete a prompt (OpenAI-compatible)", "CompletionRequest",
            {"model": first, "prompt": PROMPT, "max_tokens": 16}, "Completion", "CompletionChunk"),
        f"{root}/chat/completions": _openai_post(
            "openaiChatCompletions", "Answer a chat (OpenAI-compatible)", "ChatCompletionRequest",
            {"model": first, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16},
            "ChatCompletion", "ChatCompletionChunk"),
        f"{root}/embeddings": _openai_post(
            "openaiEmbeddings", "Embed texts (OpenAI-compatible)", "EmbeddingsRequest",
            {"model": first, "input": PROMPT}, "Embeddings"),
        f"{root}/models": _openai_get("openaiListModels", "The served models (OpenAI-compatible)", "ModelList"),
        f"{root}/models/{{name}}": _openai_get(
            "openaiRetrieveModel", "A served model (OpenAI-compatible)", "OpenAIModel", errors=[404]),
    })
    return found


def _streamed(item: dict, answer: str, each: str) -> dict:
    """A V2 operation answered with server-sent events, its errors before the first event as JSON."""
    item["post"]["responses"]["200"] = {
        "description": f"Server-sent events, each event's data (JSON) {each}",
        "content": {EVENT_STREAM: _events(_json({"anyOf": [ref(answer), ref("ErrorResponse")]}))},
    }
    return item


def _events(data: dict) -> dict:
    """Server-sent events whose ``data`` is as ``data`` says: the schema is one event's (see above)."""
    return {"schema": object_of(["data"], data=data, event=STRING, id=STRING, retry=INTEGER)}


def _json(schema: dict) -> dict:
    """A string that holds JSON, ``schema`` its value's."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _openai_post(operation_id: str, summary: str, request: str, example: dict, answer: str, chunk: str = "") -> dict:
    """``chunk``: the route streams when the request asks (``"stream": true``), each event's data a ``chunk``."""
    ok = response("OK", ref(answer))
    statuses = MODEL_ERRORS
    if chunk:
        ok["description"] = (
            f"The whole answer; with `\"stream\": true`, server-sent events, each event's data a `{chunk}` (JSON), "
            "then `[DONE]`: with `stream_options.include_usage`, a chunk with `usage` and no choices before it; "
            "an error part-way through, an `OpenAIErrorResponse` before it")
        ok["content"][EVENT_STREAM] = _events({"anyOf": [{"const": "[DONE]"}, _json(
            {"anyOf": [ref(chunk), ref("OpenAIErrorResponse")]})]})
        statuses = sorted([*statuses, 501])
    return {"post": {
        "operationId": operation_id, "summary": summary,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": ref(request), "example": example}}},
        "responses": {"200": ok, **_openai_errors(statuses)},
    }}


def _openai_get(operation_id: str, summary: str, answer: str, errors: tuple | list = ()) -> dict:
    return {"get": {"operationId": operation_id, "summary": summary, "responses": {
        "200": response("OK", ref(answer)), **_openai_errors(errors)}}}


def _openai_errors(statuses) -> dict:
    return {str(status): response(OPENAI_ERRORS.get(status) or ERRORS[status], ref("OpenAIErrorResponse"))
            for status in statuses}


def _nullable(schema: dict, description: str = "", **keywords) -> dict:
    """An optional OpenAI field that may be null (absent to the server): ``schema`` with ``keywords``."""
    return {"anyOf": [{**schema, **keywords}, NULL], **({"description": description} if description else {})}


def _range(low: float, high: float) -> dict:
    return _nullable({"type": "number"}, minimum=low, maximum=high)


def schemas(model_names: list[str]) -> dict:
    """The component schemas of ``paths``."""
    return {**_generate_schemas(), **_openai_schemas(model_names)}


def _generate_schemas() -> dict:
    return {
        "GenerateRequest": {
            **object_of(
                [],
                text_input={"anyOf": [STRING, array_of(SCALAR)], "description": (
                    "The prompt: text (BYTES), or a list of values of the datatype the model declares for it")},
                parameters={"anyOf": [PARAMETERS, {"enum": [None, False, 0, "", []]}], "description": (
                    "Parameters of the request; a false value (null, false, 0, \"\" or []) counts as none")},
            ),
            "description": (
                "A flat object: `text_input`, `parameters`, and any other key an input the model declares (its "
                "value that input's, of its datatype) or else a parameter (a string, a number or a boolean). "
                "A body whose `inputs` is an array is read as an `InferenceRequest` instead."),
            "additionalProperties": {"anyOf": [SCALAR, {"type": "array"}]},
        },
        "GenerateResponse": {
            **object_of(["model_name"], model_name=STRING, model_version=STRING,
                        text_output={"anyOf": [SCALAR, {"type": "array"}]}),
            "description": ("A flat object: each output under its name, a one-element output as its value (text for "
                            "BYTES), a larger one as a list; generated text is `text_output`"),
            "additionalProperties": {"anyOf": [SCALAR, {"type": "array"}]},
        },
    }


def _openai_schemas(model_names: list[str]) -> dict:
    text = {"type": "string", "minLength": 1}
    usage = object_of(["prompt_tokens", "completion_tokens", "total_tokens"], prompt_tokens=INTEGER,
                      completion_tokens=INTEGER, total_tokens=INTEGER)
    finish = {"enum": ["stop", "length"]}
    common = {  # what both completions routes act on, and those they only check the type of
        "model": ref("ModelName"),
        "max_tokens": _nullable(INTEGER, minimum=1),
        "temperature": _range(0, 2), "top_p": _range(0, 1),
        "presence_penalty": _range(-2, 2), "frequency_penalty": _range(-2, 2),
        "stop": {"anyOf": [text, {**array_of(text), "maxItems": 4}, NULL],
                 "description": "Where each choice's text ends, the sequence left out"},
        "n": _nullable(INTEGER, minimum=1, maximum=128),
        "seed": _nullable(INTEGER), "user": _nullable(STRING),
        "stream": _nullable(BOOLEAN),
        "stream_options": _nullable(object_of([], include_usage=_nullable(BOOLEAN)),
                                    description="Only with `\"stream\": true`"),
        **{name: _nullable({"type": kind}) for name, kind in [
            ("logit_bias", "object"), ("response_format", "object"), ("tools", "array"),
            ("parallel_tool_calls", "boolean"), ("metadata", "object"), ("store", "boolean"),
            ("service_tier", "string")]},
        "tool_choice": _nullable({"type": ["string", "object"]}),
    }
    part = object_of(["type", "text"], type={"const": "text"}, text=STRING)
    message = object_of(["role", "content"], role={"enum": ["system", "developer", "user", "assistant", "tool"]},
                        content={"anyOf": [STRING, {**array_of(part), "minItems": 1}]})
    chunk_fields = {"id": STRING, "created": INTEGER, "model": STRING, "usage": usage}
    return {
        "ModelName": ({"type": "string", "enum": model_names, "example": model_names[0]} if model_names
                      else text),
        "OpenAIErrorResponse": object_of(["error"], error=object_of(
            ["message", "type", "param", "code"], message=STRING, type=STRING, param=_nullable(STRING),
            code=_nullable(STRING))),
        "CompletionRequest": object_of(
            ["model", "prompt"], **common,
            prompt={"anyOf": [STRING, {**array_of(STRING), "minItems": 1, "maxItems": 1}],
                    "description": "One prompt: text, or a list of one text"},
            logprobs=_nullable(INTEGER), echo=_nullable(BOOLEAN), best_of=_nullable(INTEGER),
            suffix=_nullable(STRING),
        ),
        "ChatCompletionRequest": object_of(
            ["model", "messages"], **common,
            messages={**array_of(message), "minItems": 1},
            max_completion_tokens=_nullable(INTEGER, minimum=1, description="Takes the place of `max_tokens`"),
            logprobs=_nullable(BOOLEAN), top_logprobs=_nullable(INTEGER),
            reasoning_effort=_nullable(STRING), modalities=_nullable({"type": "array"}),
            prediction=_nullable({"type": "object"}),
        ),
        "Completion": object_of(
            ["id", "object", "created", "model", "choices", "usage"], id=STRING,
            object={"const": "text_completion"}, created=INTEGER, model=STRING, usage=usage,
            choices=array_of(object_of(["index", "text", "finish_reason"], index=INTEGER, text=STRING,
                                       logprobs=NULL, finish_reason=finish)),
        ),
        "ChatCompletion": object_of(
            ["id", "object", "created", "model", "choices", "usage"], id=STRING,
            object={"const": "chat.completion"}, created=INTEGER, model=STRING, usage=usage,
            choices=array_of(object_of(
                ["index", "message", "finish_reason"], index=INTEGER, logprobs=NULL, finish_reason=finish,
                message=object_of(["role", "content"], role={"const": "assistant"}, content=STRING))),
        ),
        "CompletionChunk": object_of(
            ["id", "object", "created", "model", "choices"], **chunk_fields, object={"const": "text_completion"},
            choices=array_of(object_of(["index", "text", "finish_reason"], index=INTEGER, text=STRING,
                                       logprobs=NULL, finish_reason=_nullable(finish))),
        ),
        "ChatCompletionChunk": object_of(
            ["id", "object", "created", "model", "choices"], **chunk_fields,
            object={"const": "chat.completion.chunk"},
            choices=array_of(object_of(
                ["index", "delta", "finish_reason"], index=INTEGER, logprobs=NULL, finish_reason=_nullable(finish),
                delta=object_of([], role={"const": "assistant"}, content=STRING))),
        ),
        "EmbeddingsRequest": object_of(
            ["model", "input"], model=ref("ModelName"),
            input={"anyOf": [text, {**array_of(text), "minItems": 1, "maxItems": 2048}],
                   "description": "A text, or a list of texts: one vector each"},
            encoding_format=_nullable({"enum": ["float", "base64"]}),
            dimensions=_nullable(INTEGER, minimum=1, description="Shorter vectors, where the model allows it"),
            user=_nullable(STRING),
        ),
        "Embeddings": object_of(
            ["object", "data", "model", "usage"], object={"const": "list"}, model=STRING,
            data=array_of(object_of(
                ["object", "index", "embedding"], object={"const": "embedding"}, index=INTEGER,
                embedding={"anyOf": [NUMBERS, STRING], "description": (
                    "Floats, or with `encoding_format` base64 their little-endian float32 bytes")})),
            usage=object_of(["prompt_tokens", "total_tokens"], prompt_tokens=INTEGER, total_tokens=INTEGER),
        ),
        "ModelList": object_of(["object", "data"], object={"const": "list"}, data=array_of(ref("OpenAIModel"))),
        "OpenAIModel": object_of(["id", "object", "created", "owned_by"], id=STRING,
                                 object={"const": "model"}, created=INTEGER, owned_by=STRING),
    }

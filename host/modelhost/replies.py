"""What a plugin's result becomes before it leaves the process the plugin runs in: a V1 response body, or V2
output tensors by name, and with a ``Response``'s parameters and headers, a ``Reply``.

Checked there, so that a result no protocol can carry is named as the plugin's error, with the hook that
returned it, whichever process it runs in.
"""

import re
from dataclasses import dataclass
from typing import Any

from .errors import PluginError
from .protocol import openai_responses, v1, v2
from .request import InferenceRequest, Response


@dataclass(frozen=True)
class Reply:
    """A result that says more than its outputs (``postprocess`` returned a ``Response``), as its protocol
    carries it: ``payload`` is what a bare result would have been."""

    payload: Any
    parameters: dict[str, Any]
    output_parameters: dict[str, dict[str, Any]]
    headers: dict[str, str]


SERVERS_HEADERS = {"content-length", "transfer-encoding", "connection"}
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def carried(result, request: InferenceRequest, model_name: str, metadata: dict, hooks: list[str]):
    """The result as the request's protocol carries it; PluginError names what in it cannot be carried."""
    more = result if isinstance(result, Response) else None
    try:
        if more is not None:
            result = more.outputs
        if request.protocol == "v1":
            payload: Any = v1.encode_response(result, "explanations" if request.verb == "explain" else "predictions")
        elif request.protocol == "openai":  # embeddings: generations leave as text (generation.carried)
            payload = openai_responses.checked_vectors(result, len(request.instances or ()))
        else:
            payload = v2.output_tensors(result, metadata)
        if more is None:
            return payload
        return Reply(payload, *v2.response_parameters(more.parameters, more.output_parameters, payload),
                     answer_headers(more.headers))
    except (TypeError, ValueError) as exc:
        # The host's own postprocess hands the verb's outputs on: what a response carries is the last hook's.
        hook = "postprocess" if "postprocess" in hooks else request.verb
        raise PluginError(f"model {model_name!r}: {hook} returned {exc}") from None


def answer_headers(headers: dict) -> dict[str, str]:
    """HTTP headers a plugin gives its answer; ValueError for one HTTP cannot carry or the server's own."""
    for name, value in headers.items():
        if not isinstance(name, str) or not TOKEN.fullmatch(name) or name.lower() in SERVERS_HEADERS:
            raise ValueError(f"header {name!r}, which is not one a plugin can set")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} with a value that is not one line of text: {value!r}")
    return dict(headers)

"""The request as a plugin sees it, whichever protocol it arrived on, and the response it may give."""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


class Headers(Mapping[str, str]):
    """The request's headers as a read-only mapping, names lower-cased; a name sent twice has its values
    joined with ", ", as HTTP allows.

    Made from the front end's (name, value) pairs when first read, so that a
    request whose hooks never look costs one small object; it crosses to a
    worker process as its lower-cased pairs.
    """

    __slots__ = ("pairs", "by_name")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        self.pairs = pairs
        self.by_name: Optional[dict[str, str]] = None

    def lowered(self) -> dict[str, str]:
        if self.by_name is None:
            by_name: dict[str, str] = {}
            for name, value in self.pairs:
                name = name.lower()
                by_name[name] = f"{by_name[name]}, {value}" if name in by_name else value
            self.by_name, self.pairs = by_name, ()
        return self.by_name

    def __getitem__(self, name: str) -> str:
        return self.lowered()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.lowered())

    def __len__(self) -> int:
        return len(self.lowered())

    def __repr__(self) -> str:
        return f"Headers({self.lowered()!r})"

    def __reduce__(self):
        return (Headers, (list(self.lowered().items()),))


@dataclass
class InferenceRequest:
    """One inference request, decoded from KServe V1 or the Open Inference Protocol (V2).

    ``instances`` holds a V1 request's ``instances`` (or ``inputs``) as sent;
    ``inputs`` holds a V2 request's tensors by name, shaped as declared.
    ``headers`` are its HTTP headers (read-only, names lower-cased), as KServe
    passes them to ``predict``.
    ``verb`` is what the request asks of the model: ``predict``, or (KServe V1's
    ``:explain``) ``explain``.
    ``parameters`` are the request's parameters and ``input_parameters`` each
    V2 input's own. ``id`` is the V2 request id, if the client gave one.
    ``requested_outputs`` names the V2 outputs the client asked for (None: all).
    ``request_id`` is the ``x-request-id`` the request is logged under, and
    ``timings`` the seconds it spent in each stage (``queue``, ``preprocess``,
    ``predict``, ``postprocess``), filled in by the host. ``trace_context``
    carries the request's OpenTelemetry span (its W3C ``traceparent``) to
    wherever the model runs, when the server traces (``tracing``).
    An input in a shared-memory region (Triton's extension) is a
    ``protocol.shared_memory.SharedInput`` until the model's process reads it,
    before ``preprocess``.
    """

    protocol: str
    verb: str = "predict"
    instances: Optional[list] = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    input_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    id: Optional[str] = None
    requested_outputs: Optional[dict[str, dict[str, Any]]] = None  # name -> that output's parameters
    request_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=Headers)
    trace_context: Optional[dict[str, str]] = None
    generation: Optional["Generation"] = None
    # V2 outputs to be written into shared-memory regions (protocol.shared_memory.RegionSlice), by name
    output_places: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """What an OpenAI-compatible request asks of ``generate``, checked against OpenAI's ranges before any hook runs.

    ``route`` is ``"completions"`` (``prompt`` holds the text) or
    ``"chat/completions"`` (``messages`` holds ``{"role", "content"}`` dicts,
    ``content`` as text). ``max_tokens`` (None: the model's own limit) and
    ``stop`` are kept by the host too: it closes the generator once the pieces
    reach either, so a plugin may ignore them. ``n`` answers are generated one
    after another, each by its own call of ``generate``.
    """

    route: str
    prompt: Optional[str] = None
    messages: Optional[list[dict[str, str]]] = None
    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: Optional[int] = None
    user: Optional[str] = None
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage


@dataclass(frozen=True)
class Piece:
    """A piece ``generate`` may yield to say more than its text: how many tokens it holds (OpenAI's
    ``usage.completion_tokens`` counts one per piece otherwise) and, on any one piece, how many the prompt held
    (``usage.prompt_tokens``; 0 when never said)."""

    text: str
    tokens: int = 1
    prompt_tokens: Optional[int] = None


@dataclass
class Response:
    """What ``postprocess`` may return to say more than its outputs; bare outputs work as ever.

    ``outputs`` is what it would otherwise return. ``parameters`` are the V2
    response's own, ``output_parameters`` each V2 output's, by output name: any
    JSON values. ``headers`` go on the HTTP answer, V1 or V2 (not
    Content-Length, Transfer-Encoding or Connection, which are the server's).
    """

    outputs: Any
    parameters: dict[str, Any] = field(default_factory=dict)
    output_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

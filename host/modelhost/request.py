"""The request as a plugin sees it, whichever protocol it arrived on."""

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class InferenceRequest:
    """One inference request, decoded from KServe V1 or the Open Inference Protocol (V2).

    ``instances`` holds a V1 request's ``instances`` (or ``inputs``) as sent;
    ``inputs`` holds a V2 request's tensors by name, shaped as declared.
    ``verb`` is what the request asks of the model: ``predict``, or (KServe V1's
    ``:explain``) ``explain``.
    ``parameters`` are the request's parameters and ``input_parameters`` each
    V2 input's own. ``id`` is the V2 request id, if the client gave one.
    ``requested_outputs`` names the V2 outputs the client asked for (None: all).
    ``request_id`` is the ``x-request-id`` the request is logged under, and
    ``timings`` the seconds it spent in each stage (``queue``, ``preprocess``,
    ``predict``, ``postprocess``), filled in by the host.
    """

    protocol: str
    verb: str = "predict"
    instances: Optional[list] = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    input_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    id: Optional[str] = None
    requested_outputs: Optional[list[str]] = None
    request_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)

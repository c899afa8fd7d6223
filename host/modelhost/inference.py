"""The inference call below the front ends: one request from its arrival to its answer, whatever carried it.

A front end (HTTP, and later gRPC) begins a call when a request arrives, admits
it once it knows the model's name, runs it once it has decoded it, and is told
the outcome through the ``respond`` function it gave: a result to encode, or an
error to map to its own status. It then finishes the call with the status it
answered. Everything else is done here, once for every front end: admission
(refused while the server drains), in-flight accounting, the model's runner and
version, withdrawal when the client leaves, the 503 of a drain that will not
wait any longer, the log line of a refusal, the metrics and the access line.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from . import logs, tracing
from .errors import ClientGone, ModelhostError, ServerShuttingDown
from .inflight import InFlight
from .metrics import Metrics, statistics_of
from .model import served_version
from .protocol import triton
from .repository import ModelRepository
from .request import InferenceRequest
from .runtime.runner import Runner
from .runtime.shared_memory import Regions
from .runtime.streams import PieceStream

log = logging.getLogger("modelhost")

# A request body this large is decoded on a thread: its tensors (many BYTES elements, say) could take long
# enough to hold up every other request on the event loop, health checks included. Smaller ones are decoded at
# once, as a thread's hand-over costs more than their decoding.
DECODE_ELSEWHERE_BYTES = 1 << 20

# Told the outcome: (result, None), or (None, the error that answers the request).
Respond = Callable[[object, Optional[BaseException]], None]


def ignore(result, error: Optional[BaseException]) -> None:
    """What a finished call's respond becomes: nothing more reaches its front end."""


def answering_verb(verb: str, verbs: list[str]) -> str:
    """The verb the model answers a request with. Triton's generate routes and ``ModelStreamInfer`` serve any
    model, as Triton's do: one that only predicts answers once. ``infer`` on a model that only generates is
    answered with all its pieces at once."""
    if verb == "generate" and "generate" not in verbs:
        return "predict"
    if verb == "predict" and "predict" not in verbs and "generate" in verbs:
        return "generate"
    return verb


def stream_done(call: "InferenceCall", timings: dict) -> int:
    """A generation's pieces, counted in its model's metrics, its time to the first piece in ``timings``."""
    taken_at = call.stream.taken_at if call.stream is not None else []
    if taken_at:
        timings["first_piece"] = taken_at[0] - call.started
    if call.model:
        call.inference.metrics.stream_done(call.model, call.started, taken_at)
    return len(taken_at)


class Inference:
    """What an inference call needs of its serving process; the front ends hold one and begin calls with it."""

    def __init__(self, repository: ModelRepository, in_flight: InFlight, metrics: Metrics, tracer: Any = None,
                 regions: Optional[Regions] = None):
        self.repository = repository
        self.in_flight = in_flight
        self.metrics = metrics
        self.tracer = tracer  # OpenTelemetry's, when the server traces (``tracing.server_tracer``)
        self.regions = regions or Regions()  # Triton's system shared memory, as clients registered it

    def begin(self, protocol: str, origin: logs.Origin, respond: Respond,
              headers: Optional[Mapping[str, str]] = None) -> "InferenceCall":
        """``headers``: the request's, where a client's ``traceparent`` may be."""
        call = InferenceCall(self, protocol, origin, respond)
        if self.tracer is not None:
            call.span = tracing.start_request(self.tracer, protocol, headers)
        return call

    def place_in_regions(self, request: InferenceRequest, model: str, peer: str) -> None:
        """Find the shared-memory regions a request's tensors name (Triton's extension), counted in the metrics."""
        placed = self.regions.place(request, peer)
        if placed:
            self.metrics.shared_memory_used(model, *placed)

    def statistics(self, name: Optional[str] = None, version: Optional[str] = None) -> dict:
        """Triton's statistics of model ``name`` (ModelNotFound when it is not served), or of every served one."""
        runners = {name: self.repository.get(name, version)} if name else self.repository.runners
        return {"model_stats": [
            triton.model_statistics(served, version or served_version(runner.spec, runner.metadata),
                                statistics_of(self.metrics, served))
            for served, runner in runners.items()
        ]}

    def configuration(self, name: str, version: Optional[str] = None) -> dict:
        """Triton's configuration of a ready model."""
        runner = self.repository.get_ready(name, version)
        return triton.model_config(name, runner.metadata, runner.settings.max_batch_size)


class InferenceCall:
    """One inference request. It is told its outcome once, and finished once."""

    __slots__ = ("inference", "protocol", "origin", "respond", "started", "name", "model", "request", "version",
                 "runner", "outcome", "responded", "finished", "span", "stream")

    def __init__(self, inference: Inference, protocol: str, origin: logs.Origin, respond: Respond):
        self.inference = inference
        self.protocol = protocol  # "v1" or "v2": the metrics' label
        self.origin = origin
        self.respond = respond
        self.started = time.perf_counter()
        self.name = ""  # the model it asks for
        self.model: Optional[str] = None  # once admitted for a model served here: counted in its metrics
        self.request: Optional[InferenceRequest] = None
        self.version: Optional[str] = None  # the version the request named
        self.runner: Optional[Runner] = None
        self.outcome: Optional[asyncio.Future] = None  # the runner's
        self.responded = False
        self.finished = False
        self.span: Any = None  # the request's OpenTelemetry span, when the server traces
        self.stream: Optional[PieceStream] = None  # a generation's parts, once the first has come

    def admit(self, name: str) -> None:
        """Count the call in flight for model ``name``; ServerShuttingDown once the server drains."""
        inference = self.inference
        inference.in_flight.admit(self, name)
        self.name = name
        if name in inference.repository.runners:
            self.model = name
            inference.metrics.request_started(name)

    def run(self, version: Optional[str], decode: Callable[[], InferenceRequest], size: int = 0) -> None:
        """Find the model's runner (``version`` of it, when one is named), then decode the request and hand it over.

        In that order: a request for a model not served here is 404, whatever its body holds. A request of
        ``size`` bytes or more is decoded on a thread (``DECODE_ELSEWHERE_BYTES``).
        """
        runner = self.runner = self.inference.repository.get(self.name, version)  # a decoder may read its metadata
        if size < DECODE_ELSEWHERE_BYTES:
            self.submit(runner, version, decode())
            return
        decoding = asyncio.get_running_loop().run_in_executor(None, decode)
        decoding.add_done_callback(lambda decoded: self.decoded(decoded, runner, version))

    def decoded(self, decoding: asyncio.Future, runner: Runner, version: Optional[str]) -> None:
        if self.responded:  # the client left, or the server stopped, while it was decoded
            return
        try:
            self.submit(runner, version, decoding.result())
        except Exception as error:
            self.fail(error)

    def submit(self, runner: Runner, version: Optional[str], request: InferenceRequest) -> None:
        request.request_id = self.origin.request_id
        self.inference.place_in_regions(request, self.name, self.origin.peer)
        if request.protocol == "v2":
            request.verb = answering_verb(request.verb, runner.verbs)
        if self.span is not None:
            tracing.carry(self.span, request)
        self.request = request
        self.version = version
        self.runner = runner
        outcome = runner.submit(request)
        self.outcome = outcome
        if outcome.done():  # an inline model answered at once: so does the call, in this turn of the loop
            self.settle(outcome)
        else:
            outcome.add_done_callback(self.settle)

    def model_version(self) -> Optional[str]:
        """The version of the model that answers: the one the request named, else the one served."""
        if self.version or self.runner is None:
            return self.version
        return served_version(self.runner.spec, self.runner.metadata)

    def settle(self, outcome: asyncio.Future) -> None:
        try:
            result = outcome.result()
        except asyncio.CancelledError:
            self.fail(ClientGone("the client left before its request was answered"))
        except Exception as error:
            self.fail(error)
        else:
            if isinstance(result, PieceStream):
                self.stream = result
                if self.model:
                    self.inference.metrics.stream_started(self.model)
            self.deliver(result, None)

    def fail(self, error: BaseException) -> None:
        """The error is the request's answer: logged here, mapped to a status by the front end."""
        if not self.responded:
            self.log_failure(error)
            # Logged: what it says is all that is left to use. Its traceback holds the frames that raised it, and
            # with them the request's body and message, in a cycle with this caller's frame that only the garbage
            # collector breaks: refused large requests pinned tens of MiB each until it ran.
            error.__traceback__ = error.__context__ = error.__cause__ = None
            self.deliver(None, error)

    def deliver(self, result, error: Optional[BaseException]) -> None:
        if self.responded:  # a 503 from a stopping server went first
            return
        self.responded = True
        try:
            self.respond(result, error)
        except Exception as encoding_error:  # the front end could not encode the result: that is the answer
            self.log_failure(encoding_error)
            self.respond(None, encoding_error)

    def log_failure(self, error: BaseException) -> None:
        if isinstance(error, ModelhostError):
            logs.refused(error.status, error.message, self.origin)
        else:
            log.error("Uncaught exception %s", self.origin, exc_info=error,
                      extra={"request_id": self.origin.request_id})

    def withdraw(self) -> None:
        """The client left: the request is not run if it has not started, and answered 499 either way."""
        if self.stream is not None:
            self.stream.close()  # its generator is closed, wherever it runs
        elif self.outcome is not None and not self.outcome.done():
            self.outcome.cancel()  # the runner's queue skips it; settle answers it
        elif self.outcome is None:
            self.fail(ClientGone("the client left before its request was run"))

    def expire(self) -> None:
        """503 now, whether the body is still arriving or the model still busy: the server will not wait. A
        stream under way ends with that error, as its last event."""
        error = ServerShuttingDown("the server stopped before this request was answered")
        if self.stream is not None:
            self.stream.close(error)
        self.fail(error)

    def finish(self, status: int) -> None:
        """The front end answered with ``status``: out of flight, into the metrics and the access line."""
        if self.finished:
            return
        self.finished = True
        self.respond = ignore  # its front end holds the call: no cycle left for the garbage collector to find
        inference = self.inference
        inference.in_flight.release(self)
        seconds = time.perf_counter() - self.started
        timings = self.request.timings if self.request else {}
        pieces = None if self.stream is None else stream_done(self, timings)
        if self.model:
            inference.metrics.request_done(self.model, self.protocol, status, seconds, timings)
        logs.access(self.origin, status, seconds, self.model, timings, pieces)
        if self.span is not None:
            tracing.end_request(self.span, status, self.name, self.model_version(), self.origin.request_id)

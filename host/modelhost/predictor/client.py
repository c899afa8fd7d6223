"""The predictor as a transformer's plugin calls it: one client per model and process, with the limits of the
command line (time, retries) and the errors that name the predictor as the one who failed.

The protocols differ only in how a batch is written and read (``rest.py``,
``over_grpc.py``); what a call may take and what its failures answer is here, once.
"""

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Optional

import numpy as np

from .. import logs, tracing
from ..errors import PredictorError
from ..rows import rows
from ..runtime.deadline import within

log = logging.getLogger("modelhost")

PROTOCOLS = ("v1", "v2", "grpc-v2")  # KServe's --predictor_protocol values
FIRST_RETRY_WAIT_S = 0.1  # doubled for each retry after it, up to LAST_RETRY_WAIT_S
LAST_RETRY_WAIT_S = 2.0
UNNAMED_INPUT = "input-0"  # what KServe's own clients call a V2 input that has no name
# The seconds each call to the predictor took, for the hook that made them: Model.timed sets it and reads the sum
# into the requests' timings (the "predictor" stage), so that the predictor's share of predict shows.
calls_took: contextvars.ContextVar[Optional[list[float]]] = contextvars.ContextVar("calls_took", default=None)


@dataclass(frozen=True)
class PredictorSettings:
    """Where the predictor is and how to call it: KServe's ``--predictor_*`` flags."""

    host: str  # host[:port], as KServe's --predictor_host
    protocol: str = "v1"
    use_ssl: bool = False
    timeout_s: float = 600.0  # for a whole call, its retries included
    retries: int = 0  # further tries after a connection failure; never after the predictor answered
    health_check: bool = False  # the transformer is ready only while the predictor is


class Unreachable(Exception):
    """The predictor could not be connected to, so it has not seen the request: worth another try."""


class PredictorClient:
    """The predictor of a model served in the transformer role (``--predictor_host``).

    The host's default ``predict`` is ``await predictor.infer(inputs)``; a
    plugin's own ``async def predict(inputs, predictor)`` may do more around
    it (call it twice, or with other inputs). ``address`` is where it is.
    """

    def __init__(self, settings: PredictorSettings, model_name: str):
        self.settings = settings
        self.model_name = model_name
        self.input_names: dict[str, str] = {}  # a V2 model's one input, by model, once its metadata was read

    @property
    def address(self) -> str:
        return self.settings.host

    async def infer(self, inputs: Any, model: Optional[str] = None) -> Any:
        """Send a batch to the predictor and return its outputs, one row per row of ``inputs``.

        ``inputs``: an array (V1: its rows are the instances; V2: the one
        input, named as the predictor's metadata names its only input, else
        ``input-0``) or a dict of arrays (V2: the inputs by name; V1: the
        one array's rows, or with several, one object per instance). Returns,
        for V1, the ``predictions`` as an array; for V2, the outputs by name,
        or for an array sent, the one output as an array. ``model`` defaults
        to this model's own name. The request's ``x-request-id`` goes with it.

        Raises PredictorError: the predictor's own status and message when it
        answered with an error, 502 when its answer is no answer, 503 when it
        cannot be reached (after ``--predictor_request_retries``), 504 after
        ``--predictor_request_timeout_seconds``.
        """
        model = model or self.model_name
        request_id = logs.request_id.get()
        headers = {"x-request-id": request_id} if request_id else {}
        started = time.perf_counter()
        try:
            with tracing.predictor_call(headers, self.address, model):
                outputs = await within(self.settings.timeout_s, self.with_retries(inputs, model, headers))
            if isinstance(outputs, dict) and len(outputs) == 1 and not isinstance(inputs, dict):
                outputs = next(iter(outputs.values()))  # as it was sent: a bare array
            expected, produced = rows(inputs), rows(outputs)
            if expected is not None and produced != expected:
                raise PredictorError(f"the predictor answered {produced} rows for {expected}")
        except asyncio.TimeoutError:
            raise self.failed(model, PredictorError(
                f"the predictor did not answer within {self.settings.timeout_s:g}s", 504)) from None
        except PredictorError as error:
            raise self.failed(model, error) from None
        finally:
            took = calls_took.get()
            if took is not None:
                took.append(time.perf_counter() - started)
        return outputs

    async def stream(self, inputs: Any, model: Optional[str] = None,
                     parameters: Optional[dict[str, Any]] = None) -> AsyncIterator[dict[str, np.ndarray]]:
        """The predictor's answer in parts, as it generates them: each part's outputs by name (V2 over REST, with
        ``infer_stream``, or gRPC, with ``ModelStreamInfer``; a V1 predictor answers once), asked with the V2
        request ``parameters`` (a generation's options). What the transformer role's default ``generate``
        yields, with the request's own parameters, so that a stream passes through the transformer piece by piece.

        Raises PredictorError as ``infer`` does, ``--predictor_request_timeout_seconds`` bounding the wait for
        each part.
        """
        model = model or self.model_name
        if self.settings.protocol == "v1":
            yield {UNNAMED_INPUT: await self.infer(inputs, model)}
            return
        request_id = logs.request_id.get()
        headers = {"x-request-id": request_id} if request_id else {}
        parts = self.send_stream(await self.named_inputs(inputs, model), parameters or {}, model, headers)
        try:
            while True:
                try:
                    yield await within(self.settings.timeout_s, parts.__anext__())
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise self.failed(model, PredictorError(
                        f"the predictor did not send its next part within {self.settings.timeout_s:g}s", 504)) from None
                except Unreachable as error:
                    raise self.failed(model, PredictorError("the predictor cannot be reached", 503)) from error
                except PredictorError as error:
                    raise self.failed(model, error) from None
        finally:
            await parts.aclose()

    async def with_retries(self, inputs: Any, model: str, headers: dict[str, str]) -> Any:
        attempt = 0
        while True:
            try:
                return await self.send(inputs, model, headers)
            except Unreachable as error:
                if attempt >= self.settings.retries:
                    raise PredictorError("the predictor cannot be reached", 503) from error  # the cause: for the log
                log.info("predictor %s cannot be reached (%s); trying again", self.address, error)
                await asyncio.sleep(min(FIRST_RETRY_WAIT_S * 2 ** attempt, LAST_RETRY_WAIT_S))
                attempt += 1

    def failed(self, model: str, error: PredictorError) -> PredictorError:
        log.warning("predictor %s, model %r: %s%s", self.address, model, error.message,
                    f" ({error.__cause__})" if error.__cause__ else "")
        return error

    async def ready(self, model: Optional[str] = None) -> bool:
        """Whether the predictor says the model is ready to serve; False when it cannot be asked in time."""
        try:
            return await within(self.settings.timeout_s, self.is_ready(model or self.model_name))
        except (asyncio.TimeoutError, Unreachable, PredictorError):
            return False

    async def named_inputs(self, inputs: Any, model: str) -> dict[str, np.ndarray]:
        """V2 inputs by name: a dict as it is; an array under the name of the predictor's only input."""
        if isinstance(inputs, dict):
            return {str(name): np.asarray(value) for name, value in inputs.items()}
        if model not in self.input_names:
            try:
                declared = (await self.metadata(model)).get("inputs") or []
            except PredictorError:  # the call itself will say what is wrong
                return {UNNAMED_INPUT: np.asarray(inputs)}
            self.input_names[model] = declared[0]["name"] if len(declared) == 1 else UNNAMED_INPUT
        return {self.input_names[model]: np.asarray(inputs)}

    # What each protocol implements.

    async def send(self, inputs: Any, model: str, headers: dict[str, str]) -> Any:
        """One try; Unreachable when the predictor cannot be connected to, PredictorError for a failed call."""
        raise NotImplementedError

    def send_stream(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any], model: str,
                    headers: dict[str, str]) -> AsyncGenerator[dict[str, np.ndarray], None]:
        """One streamed call's parts; Unreachable or PredictorError as ``send``."""
        raise NotImplementedError

    async def is_ready(self, model: str) -> bool:
        raise NotImplementedError

    async def metadata(self, model: str) -> dict:
        """The model's V2 metadata, as a dict; PredictorError when it cannot be had."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connections; called once the model stops serving in this process."""
        raise NotImplementedError


def make_client(settings: PredictorSettings, model_name: str) -> PredictorClient:
    if settings.protocol == "grpc-v2":
        from .over_grpc import GRPCPredictor

        return GRPCPredictor(settings, model_name)
    from .rest import RESTPredictor

    return RESTPredictor(settings, model_name)

"""The predictor over REST: KServe's V1, or the Open Inference Protocol's V2 with binary tensors both ways.

One aiohttp session per client holds the keep-alive connections, made on
first use on the event loop of the process that calls it.
"""

from typing import Any, AsyncGenerator, AsyncIterator, Optional

import aiohttp
import numpy as np

from ..defaults import instances_as_array
from ..errors import InvalidInput, PredictorError
from ..protocol import jsonio, v1, v2
from .client import PredictorClient, PredictorSettings, Unreachable

JSON = {"Content-Type": "application/json"}


class RESTPredictor(PredictorClient):
    def __init__(self, settings: PredictorSettings, model_name: str):
        super().__init__(settings, model_name)
        self.base_url = f"{'https' if settings.use_ssl else 'http'}://{settings.host}"
        self.session: Optional[aiohttp.ClientSession] = None

    async def send(self, inputs: Any, model: str, headers: dict[str, str]) -> Any:
        if self.settings.protocol == "v1":
            body = self.answer(await self.post(f"/v1/models/{model}:predict", v1_request(inputs), {**JSON, **headers}))
            return v1_predictions(body)
        described, chunks = v2.write_tensors(await self.named_inputs(inputs, model), lambda name: True, {})
        header = jsonio.dumps({"inputs": described, "parameters": {"binary_data_output": True}})
        status, answer_headers, body = await self.post(
            f"/v2/models/{model}/infer", b"".join([header, *chunks]),
            {"Content-Type": "application/octet-stream", v2.HEADER_LENGTH: str(len(header)), **headers})
        return v2_outputs(self.answer((status, answer_headers, body)), answer_headers.get(v2.HEADER_LENGTH))

    async def send_stream(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any], model: str,
                          headers: dict[str, str]) -> AsyncGenerator[dict[str, np.ndarray], None]:
        described, chunks = v2.write_tensors(inputs, lambda name: True, {})
        header = jsonio.dumps({"inputs": described, "parameters": parameters})
        try:
            async with self.open_session().post(
                    f"{self.base_url}/v2/models/{model}/infer_stream", data=b"".join([header, *chunks]),
                    headers={"Content-Type": "application/octet-stream", v2.HEADER_LENGTH: str(len(header)),
                             **headers}) as answer:
                if answer.status != 200:
                    self.answer((answer.status, answer.headers, await answer.read()))
                async for event in events(answer.content):
                    yield v2_outputs(event, None)
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise Unreachable(str(error) or type(error).__name__) from None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        return await self.request("POST", path, body, headers)

    async def request(self, method: str, path: str, body: Optional[bytes] = None,
                      headers: Optional[dict[str, str]] = None) -> tuple[int, Any, bytes]:
        """The status, headers and body of the predictor's answer; Unreachable when there is none."""
        try:
            async with self.open_session().request(method, self.base_url + path, data=body, headers=headers) as answer:
                return answer.status, answer.headers, await answer.read()
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise Unreachable(str(error) or type(error).__name__) from None

    def open_session(self) -> aiohttp.ClientSession:
        if self.session is None:
            # No pool limit: the host bounds how many batches are out at once (max_concurrency).
            # No Accept-Encoding, which aiohttp sends by default: a modelhost predictor would gzip every larger
            # answer for this hop, to be inflated again here.
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=None,
                                                 skip_auto_headers={"Accept-Encoding"})
        return self.session

    @staticmethod
    def answer(answer: tuple[int, Any, bytes]) -> bytes:
        """The body of a 200; PredictorError with the predictor's status and message otherwise."""
        status, _, body = answer
        if status == 200:
            return body
        try:
            message = jsonio.load_object(body)["error"]
        except (InvalidInput, KeyError):
            message = body[:200].decode("utf-8", "replace") or "(no message)"
        raise PredictorError(f"the predictor answered {status}: {message}", status)

    async def is_ready(self, model: str) -> bool:
        path = f"/v1/models/{model}" if self.settings.protocol == "v1" else f"/v2/models/{model}/ready"
        status, _, _ = await self.request("GET", path)
        return status == 200

    async def metadata(self, model: str) -> dict:
        try:
            return jsonio.load_object(self.answer(await self.request("GET", f"/v2/models/{model}")))
        except (Unreachable, InvalidInput) as error:
            raise PredictorError(f"the predictor's metadata: {error}") from None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


async def events(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The data of each server-sent event; an event that is an error raises PredictorError with its message."""
    data: list[bytes] = []
    async for line in content:
        line = line.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif not line and data:
            event, data = b"\n".join(data), []
            if event.startswith(b'{"error"'):
                raise PredictorError(f"the predictor's stream ended with an error: "
                                     f"{jsonio.load_object(event).get('error')}")
            yield event


def v1_request(inputs: Any) -> bytes:
    """``{"instances": ...}``: an array's rows (a dict's one array's), or a dict's arrays as one object per
    instance, as V1 answers carry them."""
    if isinstance(inputs, dict) and len(inputs) == 1:
        inputs = next(iter(inputs.values()))
    try:
        return v1.encode_response(inputs, "instances")
    except (TypeError, ValueError) as error:
        raise PredictorError(f"the inputs cannot be sent as V1 instances: {error}", 500) from None


def v1_predictions(body: bytes) -> np.ndarray:
    try:
        predictions = jsonio.load_object(body).get("predictions")
    except InvalidInput as error:
        raise PredictorError(f"the predictor answered something that is not V1: {error.message}") from None
    if not isinstance(predictions, list):
        raise PredictorError("the predictor answered V1 without a 'predictions' list")
    return instances_as_array(predictions)


def v2_outputs(body: bytes, header_length: Optional[str]) -> dict[str, np.ndarray]:
    """The outputs of a V2 answer by name, read from JSON or binary data."""
    try:
        json_part, binary = v2.split_binary(body, header_length)
        outputs = jsonio.load_object(json_part).get("outputs")
        if not isinstance(outputs, list):
            raise InvalidInput("it has no 'outputs' list")
        return v2.read_tensors(outputs, binary)[0]
    except InvalidInput as error:
        raise PredictorError(f"the predictor answered something that is not V2: {error.message}") from None

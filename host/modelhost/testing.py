"""Test a plugin as its clients will use it: served for real, in this process, with no entry point.

    from modelhost.testing import served

    def test_my_model():
        with served(MyModel()) as client:
            assert client.predict([[1.0, 2.0]]) == [[2.0, 4.0]]
            outputs = client.infer({"x": np.ones((2, 3), np.float32)}, binary=True)

``served`` starts the host's own server on a free port of 127.0.0.1, in a
thread of its own, with the plugin object loaded in this process (the
``replicas 0`` mode), and stops it afterwards. The client speaks HTTP to it:
V1 and V2, with JSON or binary tensors; an answer other than 200 raises
``ServedError`` with its status and error message.
"""

import asyncio
import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import orjson
import tornado.netutil

from .plugins import PluginSpec
from .protocol import tensors, v2
from .repository import ModelRepository
from .server import ServerConfig, serve_until
from .settings import CommandLineSettings


class ServedError(Exception):
    """The server answered with an error: ``status`` and the ``error`` it said."""

    def __init__(self, status: int, error: str):
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    """A client of a served model: ``predict`` (V1), ``infer`` (V2), or any request with ``get`` and ``post``."""

    def __init__(self, port: int, model: str):
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.model = model

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Any, headers: Optional[dict[str, str]] = None) -> Answer:
        """POST ``body``: bytes as they are, anything else as JSON."""
        if not isinstance(body, bytes):
            body, headers = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": "application/json",
                                                                                    **(headers or {})}
        return self.request("POST", path, body, headers or {})

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, {name.lower(): value for name, value in response.getheaders()},
                          response.read())
        finally:
            connection.close()

    def predict(self, instances: list, **parameters: Any) -> Any:
        """V1: the ``predictions`` for ``instances``."""
        body = {"instances": instances, **({"parameters": parameters} if parameters else {})}
        return self.succeeded(self.post(f"/v1/models/{self.model}:predict", body)).json()["predictions"]

    def infer(self, inputs: dict[str, np.ndarray], binary: bool = False, **parameters: Any) -> dict[str, np.ndarray]:
        """V2: the output tensors for ``inputs``, sent and asked for as binary tensors or as JSON."""
        body, headers = v2_request(inputs, binary, parameters)
        return v2_outputs(self.succeeded(self.post(f"/v2/models/{self.model}/infer", body, headers)))

    @staticmethod
    def succeeded(answer: Answer) -> Answer:
        """The answer, if it is a 200; else ServedError with its status and error."""
        if answer.status != 200:
            raise ServedError(answer.status, answer.json().get("error", ""))
        return answer


def v2_request(inputs: dict[str, np.ndarray], binary: bool, parameters: dict) -> tuple[bytes, dict[str, str]]:
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    for name, array in arrays.items():
        tensors.check_output(name, array)
    described, chunks = v2.write_tensors(arrays, lambda name: binary, {})
    header = orjson.dumps({"inputs": described, "parameters": {**parameters, "binary_data_output": binary}},
                          option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {"Content-Type": "application/octet-stream",
                                       v2.HEADER_LENGTH: str(len(header))}


def v2_outputs(answer: Answer) -> dict[str, np.ndarray]:
    json_length = int(answer.headers.get(v2.HEADER_LENGTH.lower(), len(answer.body)))
    outputs, _ = v2.read_tensors(orjson.loads(answer.body[:json_length])["outputs"],
                                 memoryview(answer.body)[json_length:])
    return outputs


@contextmanager
def served(plugin: object, name: str = "model", **settings: Any) -> Iterator[Client]:
    """Serve ``plugin`` (an object with ``@hookimpl`` hooks) as model ``name`` while the block runs.

    ``settings`` are the model's command-line settings (``max_batch_size=8``, say); the model runs in this
    process. Raises ServedError (503) when the plugin cannot load, with the reason.
    """
    spec = PluginSpec(name=name, target=f"<{type(plugin).__name__} served by modelhost.testing>", instance=plugin)
    with serving(spec, **{**settings, "replicas": 0}) as port:
        yield Client(port, name)


@contextmanager
def serving(spec: PluginSpec, **settings: Any) -> Iterator[int]:
    """Serve the model ``spec`` names, with these command-line settings, from a thread of this process: its port.

    With ``replicas`` 1 or more it runs in worker processes, which import ``spec.target`` themselves.
    """
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    overrides: CommandLineSettings = {setting: {None: value} for setting, value in settings.items()}
    config = ServerConfig(specs=[spec], host="127.0.0.1", http_port=0, grpc_port=None, model_settings=overrides)
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    loaded = threading.Event()
    not_ready: list[str] = []

    def started(repository: ModelRepository) -> None:
        not_ready.extend(runner.reason for runner in repository.runners.values() if not runner.ready)
        loaded.set()

    async def run() -> None:
        try:
            await serve_until(config, sockets, stopping, started)
        finally:
            loaded.set()  # also when it ends, or fails, before it has loaded the model

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), name="modelhost-testing", daemon=True)
    thread.start()
    try:
        loaded.wait()
        if not_ready or not thread.is_alive():
            raise ServedError(503, f"model {spec.name!r} is not ready: {'; '.join(not_ready) or 'the server stopped'}")
        yield sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(60)
        loop.close()

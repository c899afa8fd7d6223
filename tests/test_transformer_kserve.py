"""The transformer role against KServe's own model server as a real peer, both ways round, all on 127.0.0.1:
a modelhost transformer (``PlusOne``) in front of a ``kserve.Model`` predictor, and a ``kserve.Model``
transformer (KServe's own ``--predictor_host``) in front of a modelhost predictor (``Doubler``).

The KServe servers are ``tests/kserve_peers.py``, each in its own process: KServe's protobuf messages and
tritonclient's cannot share this one's default pool. Each side adds one or doubles, so x becomes (x + 1) * 2.
"""

import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from support import free_port, plugin_env, running_server, stop
from test_transformer import address, v1, v2

PEERS = Path(__file__).with_name("kserve_peers.py")
PLUS_ONE = ["--plugin", "m=fixture_plugins.transforming:PlusOne"]
DOUBLER = ["--plugin", "m=fixture_plugins.behaving:Doubler"]


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class KServePeer:
    """``kserve_peers.py --role ROLE`` on free ports: its ``url``, ``grpc_address`` and ``log``."""

    def __init__(self, role: str, flags):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.output = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, str(PEERS), "--role", role, "--model_name", "m", "--http_port", str(self.http_port),
             "--grpc_port", str(self.grpc_port), *flags],
            stdout=self.output, stderr=subprocess.STDOUT, text=True, env=plugin_env())

    @property
    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()

    def answers(self) -> bool:
        try:
            ready = requests.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False
        return ready and accepts(self.grpc_port)

    def wait_until_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise AssertionError(f"KServe exited with {self.process.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"KServe was not ready in {timeout}s:\n{self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop(self.process)
        self.output.close()


@contextmanager
def kserve(role: str, *flags):
    peer = KServePeer(role, flags)
    try:
        peer.wait_until_ready()
        yield peer
    finally:
        peer.stop()


# A modelhost transformer in front of KServe's predictor.

@pytest.fixture(scope="module")
def kserve_predictor():
    with kserve("predictor") as peer:
        yield peer


@pytest.fixture(scope="module", params=["v1", "v2", "grpc-v2"])
def protocol(request):
    return request.param


@pytest.fixture(scope="module")
def modelhost_transformer(kserve_predictor, protocol):
    with running_server(*PLUS_ONE, "--predictor_host", address(kserve_predictor, protocol),
                        "--predictor_protocol", protocol) as server:
        yield server


def test_a_modelhost_transformer_predicts_with_kserves_predictor(modelhost_transformer, protocol):
    assert v1(modelhost_transformer, [[1, 2], [3, 4]]).json() == {"predictions": [[4, 6], [8, 10]]}
    [output] = v2(modelhost_transformer, [1, 2]).json()["outputs"]
    assert (output["shape"], output["data"]) == ([2], [4.0, 6.0])
    if protocol != "v1":  # V1 carries JSON numbers, not tensors: names and datatypes stay behind
        assert output == {"name": "x", "datatype": "FP32", "shape": [2], "data": [4.0, 6.0]}


def test_kserves_predictor_errors_reach_the_client_as_the_predictors(modelhost_transformer):
    for refused in v1(modelhost_transformer, [[-5]]), v2(modelhost_transformer, [-5]):
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert "predictor" in error and "negative inputs" in error, error


# KServe's transformer in front of a modelhost predictor.

@pytest.fixture(scope="module")
def modelhost_predictor():
    with running_server(*DOUBLER) as server:
        yield server


@pytest.fixture(scope="module")
def kserve_transformer_v1(modelhost_predictor):
    with kserve("transformer", "--predictor_host", address(modelhost_predictor, "v1"),
                "--predictor_protocol", "v1") as peer:
        yield peer


@pytest.fixture(scope="module", params=["v2", "grpc-v2"])
def kserve_transformer_v2(request, modelhost_predictor):
    with kserve("transformer", "--predictor_host", address(modelhost_predictor, request.param),
                "--predictor_protocol", request.param) as peer:
        yield peer


def test_kserves_transformer_predicts_with_a_modelhost_predictor_over_v1(kserve_transformer_v1):
    answer = v1(kserve_transformer_v1, [[1, 2], [3, 4]])
    assert answer.json() == {"predictions": [[4, 6], [8, 10]]}, kserve_transformer_v1.log


def test_kserves_transformer_predicts_with_a_modelhost_predictor_over_v2(kserve_transformer_v2):
    answer = v2(kserve_transformer_v2, [1, 2])
    assert answer.status_code == 200, f"{answer.text}\n{kserve_transformer_v2.log}"
    (output,) = answer.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"], output["data"]) == ("x", "FP32", [2], [4.0, 6.0])

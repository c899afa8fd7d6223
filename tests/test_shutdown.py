"""SIGTERM drains a server: not ready at once, new requests refused, requests in flight answered, exit status 0."""

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support import alive, running_server, wait_for_children, wait_for_file

GATE = ["--plugin", "fixture_plugins.behaving:Gate"]
# Where the model runs, and how many worker processes that makes.
MODES = {"in-process": (["--replicas", "0"], 0), "workers": (["--replicas", "2"], 2)}


def send_held(pool, server, instance, started, release):
    """Predict through Gate in the background: it signals ``started`` and answers once ``release`` exists."""
    body = json.dumps({"instances": [instance], "parameters": {"started": str(started), "release": str(release)}})
    return pool.submit(requests.post, f"{server.url}/v1/models/Gate:predict", data=body, timeout=90)


def expect_draining(server):
    """What every request gets while the server drains; only liveness is still 200."""
    for path in ("/v2/health/ready", "/v2/models/Gate/ready", "/v1/models/Gate"):
        assert requests.get(server.url + path, timeout=10).status_code == 503, path
    assert requests.get(server.url + "/v2/health/ready", timeout=10).json() == {"ready": False}
    assert requests.get(server.url + "/v2/health/live", timeout=10).status_code == 200
    refused = [
        requests.post(f"{server.url}/v1/models/Gate:predict", data='{"instances": [9]}', timeout=10),
        requests.post(f"{server.url}/v2/models/Gate/infer", timeout=10,
                      data='{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [9]}]}'),
    ]
    for answer in refused:
        assert (answer.status_code, answer.json()) == (503, {"error": "the server is shutting down"})


@pytest.mark.parametrize("mode", MODES)
def test_requests_in_flight_get_their_answers_and_new_ones_get_503(mode, tmp_path):
    args, worker_count = MODES[mode]
    release = tmp_path / "release"
    with ThreadPoolExecutor(2) as pool, running_server(*args, *GATE) as server:
        workers = wait_for_children(server.process.pid, worker_count)
        try:
            held = []
            for n in range(2):  # one after the other, so that each is taken alone by a free thread or worker
                held.append(send_held(pool, server, n, tmp_path / f"started{n}", release))
                wait_for_file(tmp_path / f"started{n}")
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log("shutting down: waiting up to 30s for 2 request(s) in flight")
            expect_draining(server)
            assert not any(answer.done() for answer in held), "a request finished before it was released"
        finally:
            release.touch()
        assert [answer.result().json() for answer in held] == [{"predictions": [0]}, {"predictions": [1]}]
        assert server.process.wait(30) == 0
        assert not any(alive(worker) for worker in workers)
        server.wait_for_log("drained: every request answered, 0 of them with 503")


@pytest.mark.parametrize("mode", MODES)
def test_a_request_still_running_after_the_graceful_timeout_gets_503_and_the_server_exits_0(mode, tmp_path):
    args, worker_count = MODES[mode]
    started, release = tmp_path / "started", tmp_path / "release"
    with ThreadPoolExecutor(1) as pool, running_server(*args, "--graceful_timeout", "1", *GATE) as server:
        workers = wait_for_children(server.process.pid, worker_count)
        try:
            held = send_held(pool, server, 0, started, release)
            wait_for_file(started)
            server.process.send_signal(signal.SIGTERM)
            answer = held.result(60)
            assert answer.status_code == 503
            assert answer.json() == {"error": "the server stopped before this request was answered"}
            assert server.process.wait(30) == 0
        finally:
            release.touch()
        assert not any(alive(worker) for worker in workers)
        server.wait_for_log("drained: every request answered, 1 of them with 503")


def test_with_several_server_processes_each_drains_and_the_parent_exits_0(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    with ThreadPoolExecutor(1) as pool, running_server("--workers", "2", "--replicas", "0", *GATE) as server:
        children = wait_for_children(server.process.pid, 2)
        try:
            held = send_held(pool, server, 0, started, release)
            wait_for_file(started)
            server.process.send_signal(signal.SIGTERM)
            # One line per server process: the one holding the request, and the other.
            server.wait_for_log("shutting down: waiting up to 30s for 1 request(s) in flight")
            server.wait_for_log("shutting down: waiting up to 30s for 0 request(s) in flight")
            expect_draining(server)
        finally:
            release.touch()
        assert held.result().json() == {"predictions": [0]}
        assert server.process.wait(30) == 0
        assert not any(alive(child) for child in children)

"""Overload: a full queue answers 503 with Retry-After at once, and a request whose client has gone is not run."""

import asyncio
import json
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from loadgen import Call, rss_kib, run
from support import children_of, running_server, wait_for_file
from test_metrics import scrape, value

# One worker and no room to wait: a second request while the first is held finds the queue full.
GATE = ["--plugin", "fixture_plugins.behaving:Gate", "--replicas", "1"]


def held_body(tmp_path, instance) -> str:
    return json.dumps({"instances": [instance],
                       "parameters": {"started": str(tmp_path / "started"), "release": str(tmp_path / "release")}})


def test_a_full_queue_answers_503_with_retry_after_at_once_and_serving_goes_on(tmp_path):
    with running_server(*GATE, "--max_queue_size", "0") as server, ThreadPoolExecutor(1) as pool:
        held = pool.submit(requests.post, server.url + "/v1/models/Gate:predict", data=held_body(tmp_path, 1), timeout=90)
        wait_for_file(tmp_path / "started")
        refused = requests.post(server.url + "/v1/models/Gate:predict", json={"instances": [2]}, timeout=10)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert "max_queue_size" in refused.json()["error"]
        (tmp_path / "release").touch()
        assert held.result().json() == {"predictions": [1]}
        assert requests.post(server.url + "/v1/models/Gate:predict", data=held_body(tmp_path, 3)).status_code == 200


def test_a_request_whose_client_left_before_it_started_is_not_run(tmp_path):
    with running_server(*GATE) as server, ThreadPoolExecutor(1) as pool:
        held = pool.submit(requests.post, server.url + "/v1/models/Gate:predict", data=held_body(tmp_path, 1), timeout=90)
        wait_for_file(tmp_path / "started")
        body = held_body(tmp_path, 2).encode()
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as leaving:
            leaving.sendall(b"POST /v1/models/Gate:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            deadline = time.monotonic() + 30  # until the server holds it: in flight beside the held one
            while value(scrape(server), "modelhost_requests_in_flight", model_name="Gate") < 2:
                assert time.monotonic() < deadline, "the second request never arrived"
                time.sleep(0.05)
        (tmp_path / "release").touch()
        assert held.result().json() == {"predictions": [1]}
        server.wait_for_log("499 POST /v1/models/Gate:predict")  # its turn came, and it was answered, not run
        samples = scrape(server)
        assert value(samples, "request_predict_seconds_count", model_name="Gate") == 1
        assert value(samples, "modelhost_requests_total", model_name="Gate", protocol="v1", status="499") == 1


def test_a_flood_against_a_slow_model_is_turned_away_with_flat_memory():
    slow = ["--plugin", "fixture_plugins.workers:Fragile", "--replicas", "1", "--max_queue_size", "8"]
    flood = lambda count: [Call("POST", "/v1/models/Fragile:predict", b'{"instances": [0.02]}')] * count  # noqa: E731
    with running_server(*slow) as server:
        port = int(server.url.rsplit(":", 1)[1])
        processes = lambda: [server.process.pid, *children_of(server.process.pid)]  # noqa: E731
        asyncio.run(run(port, flood(1_000), 64))
        warm = rss_kib(processes())
        answers = asyncio.run(run(port, flood(5_000), 64))
        end = rss_kib(processes())
    statuses = Counter(answer.status for answer in answers)
    print(f"\nflood: {len(answers)} requests after 1000 to warm up, answered {dict(statuses)}, "
          f"server RSS {warm} KiB after warm-up, {end} KiB at the end")
    assert set(statuses) == {200, 503}, statuses
    assert all(answer.headers["retry-after"] == "1" for answer in answers if answer.status == 503)
    assert end < 1.10 * warm, (warm, end)

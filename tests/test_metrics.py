"""GET /metrics: Prometheus text, per model, summed over every process that serves."""

import os
import re
import signal
import socket
import threading
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from support import running_server, wait_for_children, wait_until

DOUBLER = ["--plugin", "fixture_plugins.behaving:Doubler"]


def scrape(server) -> dict:
    """{(sample name, sorted label items): value} from one scrape."""
    answer = requests.get(server.url + "/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_protocol_and_status_with_each_stage_timed(mode):
    with running_server(*mode, *DOUBLER) as server:
        for _ in range(3):
            assert requests.post(server.url + "/v1/models/Doubler:predict", json={"instances": [1, 2]}).ok
        v2 = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
        for _ in range(2):
            assert requests.post(server.url + "/v2/models/Doubler/infer", json=v2).ok
        assert requests.post(server.url + "/v1/models/Doubler:predict", data=b"{not json").status_code == 400

        samples = scrape(server)
        model = {"model_name": "Doubler"}
        assert value(samples, "modelhost_requests_total", **model, protocol="v1", status="200") == 3
        assert value(samples, "modelhost_requests_total", **model, protocol="v2", status="200") == 2
        assert value(samples, "modelhost_requests_total", **model, protocol="v1", status="400") == 1
        assert value(samples, "modelhost_request_seconds_count", **model, protocol="v1") == 4
        for stage in ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds",
                      "modelhost_request_queue_seconds"):
            assert value(samples, stage + "_count", **model) == 5, stage
            assert value(samples, stage + "_sum", **model) > 0, stage
        assert value(samples, "modelhost_requests_in_flight", **model) == 0
        assert value(samples, "modelhost_batch_size_sum", **model) == 5
        if mode[1] == "1":
            assert value(samples, "modelhost_replicas_up", **model) == 1


def test_a_request_whose_client_leaves_before_its_body_is_in_is_counted_499_and_leaves_flight():
    with running_server("--replicas", "0", *DOUBLER) as server:
        model = {"model_name": "Doubler"}
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /v1/models/Doubler:predict HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{")
            until(lambda: value(scrape(server), "modelhost_requests_in_flight", **model) == 1)
        until(lambda: value(scrape(server), "modelhost_requests_in_flight", **model) == 0)
        samples = scrape(server)
        assert value(samples, "modelhost_requests_total", **model, protocol="v1", status="499") == 1
        assert requests.post(server.url + "/v1/models/Doubler:predict", json={"instances": [1]}).json() == {
            "predictions": [2]}


def until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def test_one_scrape_sums_every_server_process():
    with running_server("--workers", "2", "--replicas", "0", *DOUBLER) as server:
        children = wait_for_children(server.process.pid, 2)
        sent = 0
        # A new connection for each request, so the kernel spreads them over both processes.
        while sent < 200 and not all(f" {pid} INFO modelhost.access: 200 POST" in server.log for pid in children):
            answer = requests.post(server.url + "/v1/models/Doubler:predict", json={"instances": [1]},
                                   headers={"Connection": "close"})
            assert answer.ok
            sent += 1
        server.wait_for_log(re.compile(f" ({'|'.join(map(str, children))}) INFO modelhost.access: 200 POST"))
        assert all(f" {pid} INFO modelhost.access: 200 POST" in server.log for pid in children), \
            "the requests never reached both processes"
        for _ in range(4):  # each scrape is answered by either process: every one sees the sum
            samples = scrape(server)
            assert value(samples, "modelhost_requests_total", model_name="Doubler", protocol="v1", status="200") == sent


def test_a_lost_worker_is_counted_with_its_cause_and_its_restart():
    with running_server("--plugin", "fixture_plugins.behaving:Doubler") as server:
        [worker] = wait_for_children(server.process.pid, 1)
        os.kill(worker, signal.SIGKILL)
        server.wait_for_log("starting replica 0")
        server.wait_until_ready(30, "/v2/models/Doubler/ready")
        samples = scrape(server)
        model = {"model_name": "Doubler"}
        assert value(samples, "modelhost_replica_exits_total", **model, cause="SIGKILL") == 1
        assert value(samples, "modelhost_replica_last_exit_timestamp_seconds", **model, cause="SIGKILL") > 0
        assert value(samples, "modelhost_replica_restarts_total", **model) == 1
        assert value(samples, "modelhost_replicas_up", **model) == 1


def test_batch_sizes_show_how_requests_were_gathered(tmp_path):
    batching = ["--plugin", "fixture_plugins.batching:Batches", "--max_batch_size", "8", "--max_batch_wait_ms", "500"]
    with running_server("--replicas", "0", *batching) as server:
        answers = []

        def send(count):
            body = {"instances": [[float(count)]] * count}
            answers.append(requests.post(server.url + "/v1/models/Batches:predict", json=body, timeout=30))

        senders = [threading.Thread(target=send, args=(count,)) for count in (1, 2, 3, 4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert all(answer.ok for answer in answers)
        samples = scrape(server)
        # How the four met depends on timing; that each was handed over once, in some batch, does not.
        assert value(samples, "modelhost_batch_size_sum", model_name="Batches") == 4
        assert 1 <= value(samples, "modelhost_batch_size_count", model_name="Batches") <= 4


def test_with_batching_off_each_request_is_a_predict_call_of_its_own(tmp_path):
    """Requests queued behind a busy worker are handed over together, and still predicted one by one."""
    started, release = tmp_path / "started", tmp_path / "release"
    gated = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
             "parameters": {"started": str(started), "release": str(release)}}
    with running_server("--replicas", "1", "--plugin", "fixture_plugins.behaving:Gate") as server:
        def send():
            return requests.post(server.url + "/v2/models/Gate/infer", json=gated, timeout=60)

        senders = [threading.Thread(target=send)]
        senders[0].start()
        wait_until(started.exists)
        senders += [threading.Thread(target=send) for _ in range(4)]
        for sender in senders[1:]:
            sender.start()
        wait_until(lambda: value(scrape(server), "modelhost_requests_in_flight", model_name="Gate") == 5)
        release.touch()
        for sender in senders:
            sender.join()
        samples = scrape(server)
        assert value(samples, "modelhost_batch_size_sum", model_name="Gate") == 5
        assert value(samples, "modelhost_batch_size_count", model_name="Gate") == 5

"""Request ids and log lines: every line about a request carries its id, as text or JSON."""

import asyncio
import json
import logging
import re

import requests

from modelhost import logs
from support import plugin_env, running_server

TALKS = ["--plugin", "fixture_plugins.behaving:Talks"]


def test_a_given_request_id_is_returned_and_tags_every_line_about_the_request(runner):
    args, env = runner
    with running_server(*args, *TALKS, env={**plugin_env(), **env}, timeout=120) as server:
        answer = requests.post(server.url + "/v1/models/Talks:predict", json={"instances": [1, 2]},
                               headers={"x-request-id": "trace-42"})
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == "trace-42"
        server.wait_for_log(re.compile(r"predicting 2 instances.* request_id=trace-42"))
        server.wait_for_log(re.compile(r"modelhost\.access: 200 POST /v1/models/Talks:predict .* request_id=trace-42"))


def test_a_request_without_an_id_gets_one_and_errors_are_logged_under_it():
    with running_server("--replicas", "0", *TALKS) as server:
        ok = requests.post(server.url + "/v1/models/Talks:predict", json={"instances": [1]})
        bad = requests.post(server.url + "/v1/models/Talks:predict", data=b"[")
        assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["x-request-id"])
        assert bad.status_code == 400 and bad.headers["x-request-id"] != ok.headers["x-request-id"]
        server.wait_for_log(re.compile(rf"WARNING modelhost: 400 .*malformed JSON.* request_id={bad.headers['x-request-id']}"))


def test_the_access_line_has_model_status_latency_and_stages():
    with running_server("--replicas", "0", *TALKS) as server:
        requests.post(server.url + "/v1/models/Talks:predict", json={"instances": [1]}, headers={"x-request-id": "r1"})
        server.wait_for_log(re.compile(
            r"200 POST /v1/models/Talks:predict \(127\.0\.0\.1\) model=Talks [\d.]+ms "
            r"queue=[\d.]+ms preprocess=[\d.]+ms predict=[\d.]+ms postprocess=[\d.]+ms request_id=r1"
        ))


def test_json_logs_are_one_object_a_line_with_the_access_fields(mode):
    with running_server(*mode, *TALKS, "--log-format", "json") as server:
        v2 = {"id": "v2-id", "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [7]}]}
        answer = requests.post(server.url + "/v2/models/Talks/infer", json=v2, headers={"x-request-id": "j1"})
        assert answer.json()["id"] == "v2-id"  # the V2 id is the client's and comes back as sent
        server.wait_for_log(re.compile(r'"logger":"modelhost\.access".*"request_id":"j1"'))
        lines = [json.loads(line) for line in server.log.splitlines() if line.strip()]
        [access] = [line for line in lines if line["logger"] == "modelhost.access" and line.get("request_id") == "j1"]
        assert access["model"] == "Talks" and access["status"] == 200 and access["method"] == "POST"
        assert access["latency_ms"] > 0
        assert set(access["stages_ms"]) == {"queue", "preprocess", "predict", "postprocess"}
        assert any("predicting 1 instances" in line["message"] and "j1" in json.dumps(line) for line in lines)


class CountingStream:
    def __init__(self):
        self.text, self.flushes = "", 0

    def write(self, text):
        self.text += text

    def flush(self):
        self.flushes += 1


def test_lines_logged_on_the_event_loop_are_written_out_together_at_its_next_turn():
    stream = CountingStream()
    handler = logs.StderrHandler(stream)
    logger = logging.getLogger("modelhost.test-buffering")
    logger.addHandler(handler)
    logger.propagate = False

    async def answer_three_requests():
        for number in range(3):
            logger.warning("line %d", number)
        flushed_during_the_turn = stream.flushes
        await asyncio.sleep(0)
        return flushed_during_the_turn

    try:
        assert asyncio.run(answer_three_requests()) == 0
        assert stream.flushes == 1 and stream.text == "line 0\nline 1\nline 2\n"
        logger.warning("off the loop")  # a hook thread, start-up, exit: written at once
        assert stream.flushes == 2
    finally:
        logger.removeHandler(handler)

"""``async def`` hooks: awaited on the event loop of the process that serves the model, in both modes."""

import http.server
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from fixture_plugins import awaiting
from modelhost import InferenceRequest
from modelhost.errors import PluginError, PluginLoadError
from modelhost.hookcallers import run_sync
from modelhost.model import Model
from modelhost.testing import served
from support import plugin_env, running_server, wait_until


def predict_v1(server, model: str, instances, timeout: float = 60) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": instances}, timeout=timeout)


def concurrently(count: int, send) -> list:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


class HeldPeer:
    """A second local HTTP server whose answer waits until the test releases it."""

    def __init__(self):
        self.asked = threading.Event()
        self.release = threading.Event()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                peer.asked.set()
                peer.release.wait(60)
                body = b"from the peer"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/answer"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_an_async_predict_awaits_another_server_while_the_server_keeps_answering(mode):
    peer = HeldPeer()
    env = {**plugin_env(), "MODELHOST_TEST_PEER": peer.url}
    try:
        with running_server(*mode, "--plugin", "fixture_plugins.awaiting:AsksPeer", env=env) as server:
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(predict_v1, server, "AsksPeer", [1, 2])
                assert peer.asked.wait(30), "predict never called the peer"
                for _ in range(3):  # while predict waits for its peer
                    assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
                    assert requests.get(f"{server.url}/v2/models/AsksPeer/ready", timeout=5).status_code == 200
                assert not answer.done()
                peer.release.set()
                assert answer.result().json() == {"predictions": ["from the peer", "from the peer"]}
    finally:
        peer.close()


def test_many_requests_are_inside_one_async_predict_at_once_in_one_replica(mode):
    # Each request waits in predict until all eight are there: it passes only if they run together.
    env = {**plugin_env(), "MODELHOST_TEST_PARTIES": "8", "MODELHOST_TEST_RENDEZVOUS_S": "30"}
    with running_server(*mode, "--plugin", "fixture_plugins.awaiting:Rendezvous", env=env) as server:
        answers = concurrently(8, lambda i: predict_v1(server, "Rendezvous", [i]))
        assert [answer.status_code for answer in answers] == [200] * 8, answers[0].text
        assert sorted(answer.json()["predictions"][0] for answer in answers) == list(range(8))


def test_max_concurrency_bounds_how_many_run_at_once(mode):
    # Three parties, two at a time: the rendezvous is never complete, so each gives up after its second.
    env = {**plugin_env(), "MODELHOST_TEST_PARTIES": "3", "MODELHOST_TEST_RENDEZVOUS_S": "1"}
    with running_server(*mode, "--max_concurrency", "2", "--plugin", "fixture_plugins.awaiting:Rendezvous",
                        env=env) as server:
        answers = concurrently(3, lambda i: predict_v1(server, "Rendezvous", [i]))
        assert [answer.status_code for answer in answers] == [500] * 3
        assert all("predict hook raised TimeoutError" in answer.json()["error"] for answer in answers)


def test_the_sync_hooks_of_an_async_model_run_off_the_event_loop_under_the_requests_id(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.awaiting:Mixed") as server:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
        answer = requests.post(f"{server.url}/v2/models/Mixed/infer", json=body, headers={"x-request-id": "mixed-7"},
                               timeout=30)
        outputs = {output["name"]: output["data"] for output in answer.json()["outputs"]}
        server.wait_for_log(re.compile(r"preprocess ran on a thread.* request_id=mixed-7"))
    assert outputs["x"] == [1, 2]
    assert (outputs["preprocess_on_loop"], outputs["predict_on_loop"], outputs["postprocess_on_loop"]) == \
        ([False] * 2, [True] * 2, [False] * 2)


def test_an_inline_async_model_runs_every_hook_on_the_event_loop():
    with served(awaiting.InlineMixed(), "InlineMixed") as client:
        outputs = client.infer({"x": np.array([3.0], np.float32)})
    assert outputs["x"].tolist() == [3.0]
    assert (outputs["preprocess_on_loop"], outputs["predict_on_loop"], outputs["postprocess_on_loop"]) == \
        ([True], [True], [True])


def test_concurrent_requests_are_batched_into_one_async_predict(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.awaiting:BatchesAwaiting") as server:
        answers = concurrently(12, lambda i: predict_v1(server, "BatchesAwaiting", [[i], [i + 100]]))
    rows = [answer.json()["predictions"] for answer in answers]
    assert [[row["y"] for row in answer] for answer in rows] == [[[i * 10], [(i + 100) * 10]] for i in range(12)]
    assert any(answer[0]["rows_in_batch"] > 2 for answer in rows), "no request shared its predict call"


def test_an_async_hook_that_raises_gets_the_same_500_as_a_sync_one(mode):
    plugins = ["--plugin", "fixture_plugins.awaiting:RaisesAwaiting", "--plugin", "fixture_plugins.awaiting:RaisesSync"]
    with running_server(*mode, *plugins) as server:
        awaited = predict_v1(server, "RaisesAwaiting", [1])
        synchronous = predict_v1(server, "RaisesSync", [1])
        server.wait_for_log("model 'RaisesAwaiting': predict hook raised")
        assert predict_v1(server, "RaisesAwaiting", [1]).status_code == 500  # and serves on
    assert awaited.status_code == synchronous.status_code == 500
    assert awaited.json() == {"error": synchronous.json()["error"].replace("RaisesSync", "RaisesAwaiting")}


def test_every_hook_may_be_async(mode, tmp_path):
    with running_server(*mode, "--plugin", "fixture_plugins.awaiting:AwaitsEverything") as server:
        metadata = requests.get(f"{server.url}/v2/models/AwaitsEverything", timeout=30).json()
        assert metadata["outputs"][0]["name"] == "y"
        assert predict_v1(server, "AwaitsEverything", [1.0, 2.5]).json() == {"predictions": [2.0, 3.5]}
        explained = requests.post(f"{server.url}/v1/models/AwaitsEverything:explain", json={"instances": [4.0]},
                                  timeout=30)
        assert explained.json() == {"explanations": [0.0]}
        assert requests.get(f"{server.url}/v2/models/AwaitsEverything/ready", timeout=30).status_code == 200
        unloaded = requests.post(f"{server.url}/v2/repository/models/AwaitsEverything/unload", timeout=30)
        assert unloaded.status_code == 200
    assert "unload hook raised" not in server.log and "Traceback" not in server.log


@pytest.mark.parametrize("plugin, reason", [
    (awaiting.AsyncGenerator, "predict ('AsyncGenerator.predict') is an async generator"),
    (awaiting.Generator, "predict ('Generator.predict') is a generator"),
    (awaiting.AsyncWrapper, "predict ('AsyncWrapper.predict') is async in a hook with a wrapper"),
])
def test_what_the_host_cannot_call_is_refused_before_it_serves(plugin, reason):
    with pytest.raises(PluginLoadError, match=re.escape(f"model 'm': {reason}")):
        Model("m", plugin())


def test_a_refused_plugin_is_not_ready_with_the_reason_and_never_answers_500(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.awaiting:AsyncGenerator",
                        "--plugin", "fixture_plugins.awaiting:RaisesSync", ready="/v2/models/RaisesSync/ready") as server:
        # A worker refuses the plugin when it loads, which may come after RaisesSync is ready.
        wait_until(lambda: "loading" not in predict_v1(server, "AsyncGenerator", [1]).json()["error"])
        answer = predict_v1(server, "AsyncGenerator", [1])
        assert answer.status_code == 503
        assert "is an async generator; a hook returns its result" in answer.json()["error"]
        index = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=30).json()
        [entry] = [entry for entry in index if entry["name"] == "AsyncGenerator"]
        assert "async generator" in entry["reason"]


def test_a_sync_model_never_waits_and_an_awaiting_one_is_known_as_such():
    assert not Model("m", awaiting.RaisesSync()).awaits
    assert Model("m", awaiting.Mixed()).awaits
    waits = Model("m", awaiting.BatchesAwaiting())  # sleeps 10 ms: a timer, which only an event loop keeps
    assert waits.awaits
    with pytest.raises(PluginError, match="no running event loop"):  # run_sync has none to give it
        run_sync(waits.infer(InferenceRequest(protocol="v2", inputs={"x": np.ones(1, np.float32)})))

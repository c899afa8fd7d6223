"""KServe V1's explain verb: preprocess, then explain instead of predict, then postprocess; 501 without the hook."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support import running_server


@pytest.fixture(scope="module", params=["no batching", "batching"])
def server(mode, request):
    batching = ["--max_batch_size", "8", "--max_batch_wait_ms", "50"] if request.param == "batching" else []
    with running_server(*mode, *batching, "--plugin", "fixture_plugins.behaving:Explains",
                        "--plugin", "fixture_plugins.behaving:Doubler") as server:
        yield server


def post(server, path: str, instances: list) -> requests.Response:
    return requests.post(server.url + path, json={"instances": instances}, timeout=30)


def test_explain_runs_the_explain_hook_between_preprocess_and_postprocess(server):
    answer = post(server, "/v1/models/Explains:explain", [1, 2])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"explanations": [{"value": 10, "verb": "explain"}, {"value": 20, "verb": "explain"}]}
    assert post(server, "/v1/models/Explains:predict", [1]).json() == {"predictions": [{"value": 2, "verb": "predict"}]}


def test_predictions_and_explanations_arriving_together_are_never_batched_together(server):
    calls = [("predict", n) if n % 2 else ("explain", n) for n in range(16)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda call: post(server, f"/v1/models/Explains:{call[0]}", [call[1]]), calls))
    for (verb, n), answer in zip(calls, answers):
        key = "explanations" if verb == "explain" else "predictions"
        assert answer.json() == {key: [{"value": n * (10 if verb == "explain" else 2), "verb": verb}]}


def test_a_model_without_an_explain_hook_answers_501(server):
    answer = post(server, "/v1/models/Doubler:explain", [1])
    assert answer.status_code == 501
    assert answer.json() == {"error": "model 'Doubler' does not explain its predictions (no explain hook)"}
    assert post(server, "/v1/models/Doubler:predict", [1]).json() == {"predictions": [2]}

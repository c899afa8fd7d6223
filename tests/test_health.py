"""The healthy hook: a model's own health, polled and folded into readiness, per replica in worker mode."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support import plugin_env, running_server, wait_until


def status(server, path: str) -> int:
    return requests.get(server.url + path, timeout=30).status_code


def predict(server, model: str = "Health") -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": [1]}, timeout=30)


@pytest.fixture
def health_file(tmp_path):
    path = tmp_path / "health"
    path.write_text("ok")
    return path


def serving(mode, health_file, *args, plugin="Health", **kwargs):
    env = {**plugin_env(), "MODELHOST_TEST_HEALTH": str(health_file)}
    return running_server(*mode, *args, "--plugin", f"fixture_plugins.health:{plugin}", env=env, **kwargs)


@pytest.mark.parametrize("plugin", ["Health", "AwaitingHealth"])
def test_a_model_that_is_not_healthy_is_not_ready_until_it_is_again(mode, health_file, plugin):
    with serving(mode, health_file, plugin=plugin) as server:
        assert predict(server, plugin).status_code == 200
        health_file.write_text("sick")
        wait_until(lambda: status(server, f"/v2/models/{plugin}/ready") == 503)
        assert status(server, f"/v1/models/{plugin}") == status(server, "/v2/health/ready") == 503
        refused = predict(server, plugin)
        assert refused.status_code == 503
        assert refused.json()["error"].endswith("not healthy: its healthy hook returned False")

        health_file.write_text("raise")  # another reason: logged, once, as the first was
        server.wait_for_log("is not healthy: its healthy hook raised RuntimeError: the GPU is gone")
        assert server.log.count("is not healthy: its healthy hook returned False") == 1

        health_file.write_text("ok")
        wait_until(lambda: status(server, "/v2/health/ready") == 200)
        assert predict(server, plugin).status_code == 200
        server.wait_for_log("is healthy again")
    assert server.log.count("is not healthy: its healthy hook raised RuntimeError") == 1


def test_a_model_not_healthy_when_it_loads_is_never_ready_until_it_is(mode, health_file):
    health_file.write_text("sick")
    with serving(mode, health_file, ready=None) as server:
        server.wait_for_log("is not healthy: its healthy hook returned False")
        assert status(server, "/v2/models/Health/ready") == 503
        health_file.write_text("ok")
        wait_until(lambda: status(server, "/v2/models/Health/ready") == 200)


def test_a_replica_that_is_not_healthy_gets_no_requests_while_another_serves(health_file):
    with serving(["--replicas", "2"], health_file) as server:
        with ThreadPoolExecutor(2) as pool:  # two at once go one to each idle replica
            pids = set()
            wait_until(lambda: pids.update(answer.json()["predictions"][0] for answer in
                                           pool.map(lambda _: predict(server), range(2))) or len(pids) == 2)
        sick, well = sorted(pids)
        health_file.write_text(f"sick {sick}")
        server.wait_for_log("is not healthy: its healthy hook returned False")
        assert status(server, "/v2/models/Health/ready") == 200
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: predict(server), range(20)))
        assert {answer.json()["predictions"][0] for answer in answers} == {well}


def test_a_healthy_hook_that_does_not_answer_within_the_timeout_is_not_healthy(mode, health_file):
    with serving(mode, health_file, "--timeout", "1") as server:
        health_file.write_text("hang")
        if "0" in mode:
            server.wait_for_log("is not healthy: its healthy hook did not answer within 1s")
        else:  # a worker stuck in a hook is replaced, as for any hook
            server.wait_for_log("was stuck in its healthy hook for more than 1s")
        health_file.write_text("ok")
        wait_until(lambda: status(server, "/v2/health/ready") == 200 and predict(server).status_code == 200)

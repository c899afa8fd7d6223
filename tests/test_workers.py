"""Models in worker processes of their own: parallel, isolated, restarted, bounded in time, never orphaned."""

import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support import (alive, children_of, kill_and_expect_children_to_follow, plugin_env, running_server,
                     wait_for_children, wait_until)


def predict(server, model, instances, **parameters):
    body = json.dumps({"instances": instances, "parameters": parameters})
    return requests.post(f"{server.url}/v1/models/{model}:predict", data=body, timeout=60)


def meet(server, models, tmp_path):
    """Send one Rendezvous request per model name at once; each answers only when all are inside predict."""
    with ThreadPoolExecutor(len(models)) as pool:
        answers = list(pool.map(lambda model: predict(server, model, [0], dir=str(tmp_path), expect=len(models)), models))
    assert [answer.status_code for answer in answers] == [200] * len(models), [a.text for a in answers]
    return [answer.json()["predictions"][0] for answer in answers]


def test_two_models_infer_at_the_same_time_in_processes_of_their_own(tmp_path):
    with running_server("--plugin", "a=fixture_plugins.workers:Rendezvous",
                        "--plugin", "b=fixture_plugins.workers:Rendezvous") as server:
        pids = meet(server, ["a", "b"], tmp_path)
        assert len(set(pids)) == 2 and server.process.pid not in pids
        assert set(pids) <= children_of(server.process.pid)


def test_replicas_of_one_model_infer_at_the_same_time(tmp_path):
    with running_server("--replicas", "2", "--plugin", "fixture_plugins.workers:Rendezvous") as server:
        assert len(set(meet(server, ["Rendezvous", "Rendezvous"], tmp_path))) == 2


def test_the_plugins_settings_choose_the_replicas_and_the_command_line_wins():
    with running_server("--plugin", "fixture_plugins.workers:WantsTwo") as server:
        assert len(wait_for_children(server.process.pid, 2)) == 2
        server.wait_for_log("model 'WantsTwo' is ready in 2 worker process(es)")
    with running_server("--replicas", "WantsTwo=1", "--plugin", "fixture_plugins.workers:WantsTwo") as server:
        server.wait_for_log("model 'WantsTwo' is ready in 1 worker process(es)")


@pytest.mark.parametrize("instance, cause", [("kill", "was killed by SIGKILL"), ("segfault", "was killed by SIGSEGV"),
                                             ("exit", "exited with status 7")])
def test_a_dying_worker_fails_its_request_with_503_naming_the_cause_and_comes_back(instance, cause, installed_env):
    with running_server("--plugin", "fixture_plugins.workers:Fragile", "--model", "echo", env=installed_env) as server:
        (first,) = wait_for_children_of_model(server, "Fragile")
        answer = predict(server, "Fragile", [instance])
        assert answer.status_code == 503
        assert answer.json()["error"] == f"model 'Fragile': its worker {cause} during this request"
        assert predict(server, "echo", [1]).json() == {"predictions": [1]}, "another model saw the crash"
        server.wait_until_ready(30, "/v2/models/Fragile/ready")
        replacement = predict(server, "Fragile", [0]).json()["predictions"][0]
        assert replacement != first and alive(replacement)


def wait_for_children_of_model(server, model):
    """The worker pids of a model, from its answers (a model's worker answers with its pid)."""
    return {predict(server, model, [0]).json()["predictions"][0]}


def test_killing_a_worker_under_load_leaves_no_request_unanswered():
    with running_server("--replicas", "2", "--plugin", "fixture_plugins.workers:Fragile") as server:
        workers = wait_for_children(server.process.pid, 2)
        statuses, errors = [], []

        def client():
            for _ in range(25):
                answer = predict(server, "Fragile", [0.02])  # raises on a hang (timeout) or a dropped connection
                statuses.append(answer.status_code)
                if answer.status_code != 200:
                    errors.append(answer.json()["error"])

        threads = [threading.Thread(target=client) for _ in range(6)]
        for thread in threads:
            thread.start()
        while len(statuses) < 20:
            time.sleep(0.01)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a request hung"
        assert len(statuses) == 150 and set(statuses) <= {200, 503}
        assert all(re.fullmatch(r"model 'Fragile': its worker was killed by SIGKILL during this request", e)
                   for e in errors)
        # Only the requests the killed worker held fail: a free replica takes the first waiting request and
        # its share of the rest, so with 6 clients and 2 replicas at most 1 + ceil(5 / 2) = 4.
        assert statuses.count(503) <= 4
        server.wait_for_log(re.compile(r"model 'Fragile': worker Fragile\[\d\] pid \d+ was killed by SIGKILL"))


def test_the_model_is_not_ready_while_no_replica_is_up_and_ready_again_after():
    with running_server("--plugin", "fixture_plugins.workers:Fragile") as server:
        (worker,) = wait_for_children(server.process.pid, 1)
        os.kill(worker, signal.SIGKILL)
        # Each endpoint must go down (503) and then come back (200).
        seen = {"/v2/health/ready": [], "/v2/models/Fragile/ready": []}
        deadline = time.monotonic() + 30
        while not all(statuses[-1:] == [200] and 503 in statuses for statuses in seen.values()):
            assert time.monotonic() < deadline, f"readiness went only through {seen}"
            for path, statuses in seen.items():
                status = requests.get(server.url + path, timeout=10).status_code
                if status == 503 or statuses:
                    statuses.append(status)
        answer = predict(server, "Fragile", [0])
        assert answer.status_code == 200 and answer.json()["predictions"][0] != worker


def test_a_hung_hook_gets_504_and_its_worker_is_replaced():
    with running_server("--timeout", "1", "--plugin", "fixture_plugins.workers:Hangs") as server:
        (stuck,) = wait_for_children(server.process.pid, 1)
        answer = predict(server, "Hangs", ["hang"])
        assert answer.status_code == 504
        assert answer.json()["error"] == "model 'Hangs' did not answer within 1s; its worker is being replaced"
        server.wait_until_ready(30, "/v2/models/Hangs/ready")
        assert predict(server, "Hangs", [0]).json()["predictions"][0] != stuck
        assert not alive(stuck)


def test_a_hung_hook_in_the_server_process_gets_504_too():
    with running_server("--replicas", "0", "--timeout", "1", "--plugin", "fixture_plugins.workers:Hangs") as server:
        answer = predict(server, "Hangs", ["hang"])
        assert answer.status_code == 504 and "did not answer within 1s" in answer.json()["error"]
        assert requests.get(server.url + "/v2/health/live", timeout=10).status_code == 200


def test_a_plugin_crashing_at_start_is_restarted_with_growing_backoff(installed_env):
    # echo keeps the server up: with no model that can load at all it would exit
    with running_server("--plugin", "fixture_plugins.workers:CrashesAtStart", "--model", "echo",
                        env=installed_env, ready="/v2/models/echo/ready") as server:
        deadline = time.monotonic() + 30
        while server.log.count("starting replica 0 in") < 3:
            assert time.monotonic() < deadline, server.log
            time.sleep(0.05)
        delays = [float(d) for d in re.findall(r"starting replica 0 in ([\d.]+)s", server.log)]
        assert delays == sorted(delays) and delays[0] < delays[-1]
        server.wait_for_log("its worker exited with status 1 while loading")
        answer = predict(server, "CrashesAtStart", [1])
        assert answer.status_code == 503 and "exited with status 1 while loading" in answer.json()["error"]
        # A load asked for is told why it failed, not that the model is still "loading".
        load = requests.post(f"{server.url}/v2/repository/models/CrashesAtStart/load", timeout=60)
        assert load.status_code == 400 and "exited with status 1 while loading" in load.json()["error"], load.text


def answered(server) -> None:
    """Until a worker of Fragile answers a request (after a restart, once it is up again)."""
    deadline = time.monotonic() + 60
    while predict(server, "Fragile", [0]).status_code != 200:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def killed_by_a_request(server) -> None:
    """Until a worker runs an 'exit' and dies of it: a 503 that says so, not one saying the model is restarting."""
    deadline = time.monotonic() + 60
    while "exited with status 7 during this request" not in predict(server, "Fragile", ["exit"]).text:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def restart_delays(server, count: int) -> list[str]:
    wait_until(lambda: server.log.count("starting replica 0 in") >= count)
    return re.findall(r"starting replica 0 in ([\d.]+)s", server.log)


def test_a_request_that_kills_a_serving_worker_again_and_again_costs_one_prompt_restart_each_time():
    # Each worker answers, then dies of the next request: the request's doing, so no backoff grows (it reached 30 s,
    # and held the model down, when each crash counted as the model's).
    with running_server("--plugin", "fixture_plugins.workers:Fragile") as server:
        for _ in range(5):
            answered(server)
            killed_by_a_request(server)
        answered(server)
        assert restart_delays(server, 5) == ["0.25"] * 5


def test_a_worker_that_dies_of_its_first_request_each_time_is_restarted_with_growing_backoff():
    # No worker answers anything: the model cannot serve, and is not restarted in a tight loop.
    with running_server("--plugin", "fixture_plugins.workers:Fragile") as server:
        for _ in range(3):
            killed_by_a_request(server)
        assert restart_delays(server, 3) == ["0.5", "1", "2"]


def test_plugin_output_reaches_the_log_tagged_and_never_the_channel():
    with running_server("--plugin", "fixture_plugins.workers:Noisy") as server:
        for _ in range(3):
            assert predict(server, "Noisy", [[1, 2]]).json() == {"predictions": [[1, 2]]}
        server.wait_for_log(re.compile(r"INFO modelhost\.worker: Noisy\[0\] pid \d+: noise on stdout"))
        server.wait_for_log(re.compile(r"WARNING modelhost\.worker: Noisy\[0\] pid \d+: noise on stderr"))


def test_sigterm_stops_every_worker(installed_env):
    with running_server("--replicas", "Fragile=2", "--plugin", "fixture_plugins.workers:Fragile",
                        "--model", "echo", env=installed_env) as server:
        workers = wait_for_children(server.process.pid, 3)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert not any(alive(worker) for worker in workers)


def test_workers_exit_by_themselves_when_the_server_is_killed():
    with running_server("--replicas", "2", "--plugin", "fixture_plugins.workers:Fragile") as server:
        kill_and_expect_children_to_follow(server, 2)


def test_the_server_never_imports_a_plugin_served_from_workers(tmp_path):
    env = plugin_env()
    env["TATTLETALE_FILE"] = str(tmp_path / "importers")
    with running_server("--replicas", "2", "--plugin", "fixture_plugins.tattletale", env=env) as server:
        workers = wait_for_children(server.process.pid, 2)
        importers = {int(pid) for pid in (tmp_path / "importers").read_text().split()}
        assert importers == workers and server.process.pid not in importers

"""Models on Ray Serve (``--runner ray``), on a real Ray: the session's cluster, joined through --ray_address, and a
local Ray that a server starts for itself. The protocol suites run through the Ray runner too (``runner`` in
test_endpoints.py and test_grpc.py)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import requests

from loadgen import Call, run
from modelhost import tracing
from modelhost.runtime.ray_cluster import SERVE_DATA_PATH
from modelhost.testing import Client
from otlp_receiver import (CLIENT_SPAN, CLIENT_TRACE, STAGES, TRACED, TRACEPARENT, assert_nested, exporting_to,
                           otlp_receiver, received_trace)
from support import plugin_env, running_server, wait_until

pytestmark = pytest.mark.ray

FRAGILE = ["--plugin", "Fragile=fixture_plugins.workers:Fragile"]
SWITCHES = ["--plugin", "Switches=fixture_plugins.workers:ReadsServeSwitches"]
DOUBLER = ["--plugin", "fixture_plugins.behaving:Doubler"]
WORDS = ["--plugin", "Words=fixture_plugins.generating:Words"]
COUNTING = ["--plugin", "Counting=fixture_plugins.stepping:Counting"]  # steps: continuous batching
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def pids_answering(server, count: int) -> set[int]:
    """The processes that answered ``count`` requests to Fragile, each sent apart."""
    return {requests.post(f"{server.url}/v1/models/Fragile:predict", json={"instances": [0]}, timeout=30)
            .json()["predictions"][0] for _ in range(count)}


def is_replica(pid: int) -> bool:
    return "ServeReplica" in " ".join(psutil.Process(pid).cmdline())


@pytest.fixture(scope="module")
def received():
    with otlp_receiver("http/protobuf") as received:
        yield received


@pytest.fixture(scope="module")
def fragile(ray_head, received, tmp_path_factory):
    """Models on the session's cluster, two replicas each, the server tracing to an OTLP receiver; a generating
    one records its generators' lives in ``server.record``."""
    record = tmp_path_factory.mktemp("generating") / "record.txt"
    # The replicas' processes are the cluster's, started with its environment: the record's path goes with them.
    actor_options = {"num_cpus": 0.1, "runtime_env": {"env_vars": {"GENERATING_RECORD": str(record)}}}
    # Words and Counting need one replica: a second would only cost the suite its start.
    with running_server(*ray_head.serve_args("--replicas", "2", "--replicas", "Words=1", "--replicas", "Counting=1",
                                             "--ray_actor_options", json.dumps(actor_options)),
                        *FRAGILE, *SWITCHES, *DOUBLER, *TRACED, *WORDS, *COUNTING,
                        env={**exporting_to(received, "http/protobuf"), **ray_head.env}, timeout=120) as server:
        server.record = record
        yield server


def test_a_replica_on_this_machine_reads_and_writes_a_clients_shared_memory_itself(fragile):
    import tritonclient.http as httpclient
    import tritonclient.utils.shared_memory as shm

    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    handles = [shm.create_shared_memory_region(name, f"/modelhost-test-ray-{name}", data.nbytes)
               for name in ("ray-in", "ray-out")]
    try:
        shm.set_shared_memory_region(handles[0], [data])
        client = httpclient.InferenceServerClient(fragile.url.split("//")[1])
        for name in ("ray-in", "ray-out"):
            client.register_system_shared_memory(name, f"/modelhost-test-ray-{name}", data.nbytes)
        tensor = httpclient.InferInput("x", list(data.shape), "FP32")
        tensor.set_shared_memory("ray-in", data.nbytes)
        output = httpclient.InferRequestedOutput("x")
        output.set_shared_memory("ray-out", data.nbytes)
        client.infer("Doubler", [tensor], outputs=[output])
        assert (shm.get_contents_as_numpy(handles[1], np.float32, list(data.shape)) == data * 2).all()
        client.unregister_system_shared_memory()
    finally:
        for handle in handles:
            shm.destroy_shared_memory_region(handle)


def test_a_generation_streams_from_a_replica_and_a_client_that_leaves_closes_it_there(fragile):
    answer = requests.post(f"{fragile.url}/openai/v1/chat/completions", timeout=30, json={
        "model": "Words", "messages": [{"role": "user", "content": "on ray"}], "max_tokens": 4, "stream": True})
    events = [event for event in answer.text.split("\n\n") if event]
    assert answer.headers["Content-Type"].startswith("text/event-stream") and events[-1] == "data: [DONE]"
    assert "word3 " in answer.text and "word4 " not in answer.text
    leaving = requests.post(f"{fragile.url}/v2/models/Words/generate_stream", stream=True, timeout=30,
                            json={"text_input": "leaves ray", "count": 1000, "delay": 0.01})
    assert next(leaving.iter_lines()).startswith(b"data: {")
    leaving.close()
    wait_until(lambda: "closed leaves ray" in fragile.record.read_text())
    yielded = fragile.record.read_text().count("yielded")
    time.sleep(0.5)
    assert fragile.record.read_text().count("yielded") == yielded  # closed: it yields no more


def test_a_replica_steps_concurrent_sequences_together_and_ends_one_whose_client_leaves(fragile):
    def streamed(prompt: str) -> str:
        answer = requests.post(f"{fragile.url}/v2/models/Counting/generate_stream", timeout=30,
                               json={"text_input": prompt, "count": 6, "delay": 0.05})
        return "".join(json.loads(line[len(b"data: "):])["text_output"] for line in answer.iter_lines() if line)

    with ThreadPoolExecutor(2) as pool:
        texts = list(pool.map(streamed, ["ray one", "ray two"]))
    assert texts == ["".join(f"{prompt}:{index} " for index in range(6)) for prompt in ("ray one", "ray two")]
    assert "step ray one,ray two" in fragile.record.read_text() or "step ray two,ray one" in fragile.record.read_text()
    leaving = requests.post(f"{fragile.url}/v2/models/Counting/generate_stream", stream=True, timeout=30,
                            json={"text_input": "ray leaves", "count": 100000, "delay": 0.01})
    assert next(leaving.iter_lines()).startswith(b"data: {")
    leaving.close()
    wait_until(lambda: "end ray leaves" in fragile.record.read_text())


def test_a_replicas_spans_come_back_to_the_server_under_the_request(fragile, received):
    answer = requests.post(f"{fragile.url}/v1/models/traced:predict", json={"instances": [1]}, headers=TRACEPARENT,
                           timeout=30)
    assert answer.json() == {"predictions": [2]}
    request_span = tracing.REQUEST_SPANS["v1"]
    spans = received_trace(received, CLIENT_TRACE, STAGES | {"plugin-work", request_span})
    assert_nested(spans, request_span, CLIENT_SPAN)


def test_two_replicas_answer_from_two_ray_actor_processes(fragile):
    answered = pids_answering(fragile, 30)
    assert len(answered) == 2 and fragile.process.pid not in answered
    assert all(is_replica(pid) for pid in answered)
    metrics = requests.get(f"{fragile.url}/metrics", timeout=10).text
    assert 'modelhost_replicas_up{model_name="Fragile"} 2.0' in metrics
    assert "model 'Fragile' is ready in 2 Ray Serve replica(s)" in fragile.log


def test_replicas_on_a_joined_cluster_take_serves_fast_data_path(fragile):
    # The session's cluster was started without the switches: the deployment's runtime environment brings them.
    switches = list(SERVE_DATA_PATH)
    answer = requests.post(f"{fragile.url}/v1/models/Switches:predict", json={"instances": switches}, timeout=30)
    assert answer.json()["predictions"] == [SERVE_DATA_PATH[name] for name in switches]


def test_a_batch_over_grpcs_default_message_size_reaches_the_replica(fragile):
    array = np.arange(5 * 2**20 // 4, dtype=np.float32)  # 5 MiB, over the 4 MiB a gRPC server takes by default
    doubler = Client(int(fragile.url.rsplit(":", 1)[1]), "Doubler")
    np.testing.assert_array_equal(doubler.infer({"x": array}, binary=True)["x"], array * 2)  # raises unless 200


def test_a_replica_killed_under_load_leaves_no_request_unanswered_and_serve_brings_it_back(fragile):
    before = pids_answering(fragile, 20)
    victim = min(before)
    calls = [Call("POST", "/v1/models/Fragile:predict", json.dumps({"instances": [0.005]}).encode())
             for _ in range(400)]
    answered = 0

    def kill_midway(answer):
        nonlocal answered
        answered += 1
        if answered == 100:
            os.kill(victim, signal.SIGKILL)

    answers = asyncio.run(run(int(fragile.url.rsplit(":", 1)[1]), calls, 16, on_answer=kill_midway))
    assert len(answers) == len(calls)
    assert {answer.status for answer in answers} <= {200, 503}, {answer.status for answer in answers}
    refused = [json.loads(answer.body)["error"] for answer in answers if answer.status == 503]
    assert all("Ray Serve replica" in error for error in refused), refused[:3]
    # Serve starts a replica in the dead one's place: two answer again, one of them new.
    wait_until(lambda: len(pids_answering(fragile, 10) - {victim}) == 2, timeout=60)


def test_the_plugins_own_settings_place_its_replicas(ray_head):
    # WantsTwo's settings ask for 2 replicas; a tenth of a CPU each comes from the command line.
    with running_server(*ray_head.serve_args(), "--plugin", "Fragile=fixture_plugins.workers:WantsTwo",
                        env={**plugin_env(), **ray_head.env}, timeout=120) as server:
        assert len(pids_answering(server, 30)) == 2


def test_a_plugins_settings_can_choose_ray_themselves(ray_head):
    with running_server("--ray_address", ray_head.address, "--plugin", "Fragile=fixture_plugins.workers:AsksForRay",
                        env={**plugin_env(), **ray_head.env}, timeout=120) as server:
        answered = pids_answering(server, 30)
        assert len(answered) == 2 and all(is_replica(pid) for pid in answered)
        assert "model 'Fragile': its settings ask for runner 'ray'" in server.log


def test_a_deployment_no_node_can_hold_is_reported_at_start(ray_head):
    result = subprocess.run(
        [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", "0", "--grpc_port", "0",
         *ray_head.serve_args(), "--ray_actor_options", '{"num_gpus": 1}', *FRAGILE],
        capture_output=True, text=True, env={**plugin_env(), **ray_head.env}, timeout=120)
    assert result.returncode == 3, result.stderr  # no model could be loaded
    assert "model 'Fragile' is not ready: no node of the Ray cluster can fulfil the resource request" in result.stderr
    assert "'GPU': 1" in result.stderr


def test_load_unload_and_upgrade_go_through_serve_applications(fragile):
    repository = f"{fragile.url}/v2/repository/models/Fragile"
    before = pids_answering(fragile, 20)
    assert requests.post(f"{repository}/load", timeout=120).status_code == 200  # an upgrade: new replicas
    after = pids_answering(fragile, 20)
    assert len(after) == 2 and not after & before
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in before), timeout=30)  # the old replicas stop
    assert requests.post(f"{repository}/unload", timeout=120).status_code == 200
    assert requests.post(f"{fragile.url}/v1/models/Fragile:predict", json={"instances": [0]}).status_code == 404
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in after), timeout=30)
    assert requests.post(f"{repository}/load", timeout=120).status_code == 200
    assert len(pids_answering(fragile, 20)) == 2


def applications(ray_head) -> list[str]:
    """The Serve applications on the session's cluster, as another client of it sees them."""
    script = textwrap.dedent(f"""
        import ray
        from ray import serve
        ray.init(address={ray_head.address!r}, configure_logging=False, log_to_driver=False)
        print(sorted(serve.status().applications))
    """)
    env = {**os.environ, **ray_head.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    return eval(output.stdout.strip().splitlines()[-1])


def test_a_joined_cluster_is_left_running_with_this_servers_applications_deleted(ray_head):
    before = set(applications(ray_head))  # other tests' servers may have theirs there
    with running_server(*ray_head.serve_args(), *FRAGILE, env={**plugin_env(), **ray_head.env},
                        timeout=120) as server:
        deployed = set(applications(ray_head)) - before
        assert deployed
    assert server.process.returncode == 0
    left = applications(ray_head)  # the cluster answers: it runs on
    assert not deployed & set(left)


def processes_of_ray_session(replica: int) -> list[psutil.Process]:
    """Every process of the Ray that runs this replica: Ray daemonizes them, so they are found by the session
    directory that the replica's raylet names on its command line."""
    raylet = next(process for process in psutil.Process(replica).parents() if process.name() == "raylet")
    session = next(part for part in raylet.cmdline() if "session_dir=" in part).split("session_dir=")[1]
    return [process for process in psutil.process_iter(["cmdline"])
            if session in " ".join(process.info["cmdline"] or []) or process.pid == replica]


def test_a_local_ray_listens_on_loopback_alone_and_stops_with_the_server():
    with running_server("--runner", "ray", "--ray_actor_options", '{"num_cpus": 0.1}', *FRAGILE,
                        timeout=180) as server:
        [replica] = pids_answering(server, 5)
        ray_processes = processes_of_ray_session(replica)
        assert len(ray_processes) > 3, ray_processes  # GCS, raylet, Serve's controller, the replica at least
        listening = {(process.name(), connection.laddr.ip, connection.laddr.port) for process in ray_processes
                     for connection in process.connections("inet") if connection.status == psutil.CONN_LISTEN}
        assert listening and all(ip in LOOPBACK for _, ip, _ in listening), [l for l in listening if l[1] not in LOOPBACK]
    assert server.process.returncode == 0
    left_running = lambda: [process for process in ray_processes  # noqa: E731
                            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
    try:
        wait_until(lambda: not left_running(), timeout=30)
    except AssertionError:
        raise AssertionError(f"still running: {[(p.pid, p.cmdline()) for p in left_running()]}") from None

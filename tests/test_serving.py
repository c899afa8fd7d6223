"""The server as a process: never blocked by a hook, KServe's flags, several processes on one port."""

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import requests

from fixture_plugins import behaving
from modelhost.testing import served
from support import kill_and_expect_children_to_follow, plugin_env, running_server, wait_for_children, wait_for_file

FLAGS = ["--http_port", "--http-port", "--workers", "--max_buffer_size", "--max-buffer-size",
         "--max_asyncio_workers", "--max-asyncio-workers", "--host", "--model", "--plugin",
         "--graceful_timeout", "--graceful-timeout", "--log-format", "--log_format",
         "--max_queue_size", "--max-queue-size", "--idle_timeout", "--idle-timeout", "--body_timeout", "--body-timeout",
         "--max_concurrency", "--max-concurrency", "--health_interval_s", "--health-interval-s",
         "--grpc_port", "--grpc-port", "--enable_grpc", "--enable-grpc", "--model_name", "--log_config_file",
         "--configure_logging", "--access_log_format", "--enable_latency_logging", "--timeout-keep-alive",
         "--timeout_keep_alive", "--event-loop", "--event_loop", "--ssl_certfile", "--ssl_keyfile", "--max_threads",
         "--enable_docs_url", "--grpc_max_receive_message_length", "--grpc_max_send_message_length"]


def test_health_answers_while_a_prediction_is_running(tmp_path, mode):
    started, release = tmp_path / "started", tmp_path / "release"
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:Gate") as server:
        body = f'{{"instances": [1], "parameters": {{"started": "{started}", "release": "{release}"}}}}'
        answers = []
        predicting = threading.Thread(
            target=lambda: answers.append(requests.post(server.url + "/v1/models/Gate:predict", data=body, timeout=90))
        )
        predicting.start()
        try:
            wait_for_file(started)
            for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/Gate/ready"):
                assert requests.get(server.url + path, timeout=10).status_code == 200
            assert not answers, "the prediction finished before it was released"
        finally:
            release.touch()
            predicting.join(90)
        assert answers[0].json() == {"predictions": [1]}


def test_an_inline_model_runs_on_the_event_loop_and_others_on_hook_threads(caplog):
    caplog.set_level(logging.INFO, "modelhost")
    with served(behaving.InlineThreadName(), "inline") as client:
        assert client.predict([1, 2]) == ["modelhost-testing"] * 2  # the thread modelhost.testing serves on
    with served(behaving.ThreadName(), "threaded") as client:
        assert client.predict([1])[0].startswith("modelhost-hooks")
    assert "model 'inline' is ready in the server process, on its event loop" in caplog.text


def test_help_documents_every_flag_in_both_spellings():
    result = subprocess.run([sys.executable, "-m", "modelhost", "serve", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in FLAGS:
        assert flag in result.stdout
    for default in ("$PORT when set, else 8080", "10 MiB", "min(32, cpus + 4)"):
        assert default in result.stdout


def test_port_comes_from_the_PORT_variable_and_dashed_flags_work():
    env = plugin_env()
    env["PORT"] = "0"
    with running_server("--plugin", "fixture_plugins.behaving:Doubler", "--max-buffer-size", "10",
                        "--max-asyncio-workers", "2", env=env) as server:
        answer = requests.post(server.url + "/v1/models/Doubler:predict", data=b'{"instances": [1, 2]}')
        assert answer.status_code == 413
    env["PORT"] = "not-a-port"
    result = subprocess.run([sys.executable, "-m", "modelhost", "serve"], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "expected an integer, got 'not-a-port'" in result.stderr


def test_workers_share_the_port_and_each_loads_its_models_after_the_fork():
    # In the server processes themselves (--replicas 0), so that the plugin's pid is theirs.
    with running_server("--workers", "2", "--replicas", "0", "--plugin", "fixture_plugins.behaving:Counter") as server:
        parent = server.process.pid
        children = wait_for_children(parent, 2)
        loaded_in = wait_for_log_pids(server, "model 'Counter' is ready", 2)
        assert loaded_in == children and parent not in loaded_in
        answered_by = set()
        for _ in range(200):
            answer = requests.post(server.url + "/v1/models/Counter:predict", data=b'{"instances": [0]}')
            answered_by.add(answer.json()["predictions"][0])
        assert answered_by <= children
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        for child in children:
            assert not os.path.exists(f"/proc/{child}"), f"server process {child} outlived the parent"


def test_with_several_processes_the_server_is_ready_only_once_all_have_loaded(tmp_path):
    release = tmp_path / "release"
    env = plugin_env() | {"MODELHOST_TEST_RELEASE": str(release)}
    with running_server("--workers", "2", "--replicas", "0", "--plugin", "fixture_plugins.lifecycle:SecondLoadWaits",
                        env=env, ready=None) as server:
        wait_for_log_pids(server, "model 'SecondLoadWaits' is ready", 1)
        probes = {requests.get(server.url + "/v2/health/ready").status_code for _ in range(50)}
        assert probes == {503}
        release.touch()
        server.wait_until_ready(30, "/v2/health/ready")
        assert {requests.get(server.url + "/v2/health/ready").status_code for _ in range(50)} == {200}


def wait_for_log_pids(server, message, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {int(match[1]) for match in re.finditer(rf"\S+ \S+ (\d+) INFO modelhost: {re.escape(message)}", server.log)}
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{message!r} was not logged by {count} processes:\n{server.log}")


def test_sigterm_stops_a_single_process_server_cleanly():
    with running_server("--plugin", "fixture_plugins.behaving:Doubler") as server:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0


def test_server_processes_die_with_a_killed_parent():
    with running_server("--workers", "2", "--replicas", "0", "--plugin", "fixture_plugins.behaving:Doubler") as server:
        kill_and_expect_children_to_follow(server, 2)

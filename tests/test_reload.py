"""--reload: a plugin's changed source is served through the repository's upgrade, without a dropped request;
code that cannot load leaves the old code serving, with the error in the log."""

import threading
import time

import requests

from support import plugin_env, running_server

VERSION = """from modelhost import hookimpl


class Model:
    @hookimpl
    def predict(self, inputs):
        return [{answer!r}] * len(inputs)
"""


def wait_for_answer(server, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.post(server.url + "/v1/models/Model:predict", json={"instances": [1]},
                         timeout=30).json() == {"predictions": [expected]}:
            return
        time.sleep(0.05)
    raise AssertionError(f"{expected!r} was never answered:\n{server.log}")


def test_changed_code_is_served_without_a_dropped_request_and_broken_code_leaves_the_old_serving(tmp_path):
    module = tmp_path / "devmodel.py"
    module.write_text(VERSION.format(answer="first"))
    answers, stop = [], threading.Event()

    def keep_asking(url):
        while not stop.is_set():
            answers.append(requests.post(url, json={"instances": [1]}, timeout=30).status_code)

    with running_server("--plugin", "devmodel:Model", "--reload", cwd=tmp_path, env=plugin_env()) as server:
        server.wait_for_log("reloading models when their source changes: Model")
        asker = threading.Thread(target=keep_asking, args=(server.url + "/v1/models/Model:predict",))
        asker.start()
        module.write_text(VERSION.format(answer="second"))
        wait_for_answer(server, "second")
        module.write_text("this is not Python\n")
        server.wait_for_log("its changed code cannot serve, so the code before it serves on")
        wait_for_answer(server, "second")
        module.write_text(VERSION.format(answer="third"))
        wait_for_answer(server, "third")
        stop.set()
        asker.join()
    assert answers and set(answers) == {200}


def test_reload_needs_worker_processes_and_one_server_process(tmp_path):
    from test_cli_errors import modelhost

    for flags in (["--replicas", "0"], ["--workers", "2"]):
        result = modelhost("serve", "--plugin", "fixture_plugins.behaving:Doubler", "--reload", *flags)
        assert result.returncode == 2 and "--reload loads changed code into new worker processes" in result.stderr

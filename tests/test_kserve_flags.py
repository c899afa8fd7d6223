"""KServe's model server flags with KServe's spelling, acting as in KServe against a running server."""

import importlib.util
import json
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest
import requests

from modelhost.protocol import grpc_v2
from support import in_another_process, plugin_env, running_server, wait_until

DOUBLER = ["--plugin", "fixture_plugins.behaving:Doubler"]


def modelhost(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelhost", "serve", "--http_port", "0", "--grpc_port", "0", *args],
                          capture_output=True, text=True, env=plugin_env(), timeout=60)


def predict(server, model: str) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": [1]}, timeout=30)


def test_model_name_serves_the_one_selected_model_under_that_name(mode):
    with running_server(*mode, "--model_name", "custom-model", *DOUBLER) as server:
        assert predict(server, "custom-model").json() == {"predictions": [2]}
        assert predict(server, "Doubler").status_code == 404


def test_model_name_with_several_models_selected_names_them():
    result = modelhost("--model_name", "one", *DOUBLER, "--plugin", "fixture_plugins.behaving:Picky")
    assert result.returncode == 2
    assert "--model_name names the one model served, and 2 are selected (Doubler, Picky)" in result.stderr


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_log_config_file_routes_the_servers_lines_as_it_says(tmp_path, suffix):
    written = tmp_path / "server.log"
    config = {"version": 1, "formatters": {"plain": {"format": "CONFIGURED %(name)s %(message)s"}},
              "handlers": {"file": {"class": "logging.FileHandler", "filename": str(written), "formatter": "plain"}},
              "loggers": {"modelhost": {"handlers": ["file"], "level": "INFO"}}}
    path = tmp_path / f"logging{suffix}"
    path.write_text(json.dumps(config))  # JSON is YAML too
    with running_server(*DOUBLER, "--log_config_file", str(path)) as server:
        predict(server, "Doubler")
        wait_until(lambda: "CONFIGURED modelhost.access 200 POST /v1/models/Doubler:predict" in written.read_text())
    assert "CONFIGURED modelhost model 'Doubler' is ready" in written.read_text()


def test_configure_logging_false_leaves_logging_to_the_config_file(tmp_path):
    written = tmp_path / "server.log"
    path = tmp_path / "logging.json"
    path.write_text(json.dumps({
        "version": 1, "handlers": {"file": {"class": "logging.FileHandler", "filename": str(written)}},
        "root": {"handlers": ["file"], "level": "INFO"}}))
    # Nothing reaches the output to learn a port from: the server is started by hand, and told to stop.
    server = subprocess.Popen([sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", "0",
                               "--grpc_port", "0", *DOUBLER, "--configure_logging", "false",
                               "--log_config_file", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=plugin_env())
    try:
        wait_until(lambda: server.poll() is not None or written.exists() and "is ready" in written.read_text())
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "is ready" not in output  # modelhost's own stderr handler was never installed


@pytest.mark.parametrize("config, message", [
    ("missing.json", "--log_config_file missing.json: No such file or directory"),
    ("{not json", "cannot be read"),
])
def test_a_log_config_file_that_cannot_be_used_is_named(tmp_path, config, message):
    path = tmp_path / "missing.json"
    if config != "missing.json":
        path.write_text(config)
    result = modelhost(*DOUBLER, "--log_config_file", str(path) if config != "missing.json" else config)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_an_access_log_format_and_latency_logging_off_shape_the_access_line():
    layout = '%(h)s "%(r)s" %(s)s %(model)s %(request_id)s'
    with running_server(*DOUBLER, "--access_log_format", layout, "--enable_latency_logging", "false") as server:
        requests.post(f"{server.url}/v1/models/Doubler:predict", json={"instances": [1]},
                      headers={"x-request-id": "fmt-1"}, timeout=30)
        server.wait_for_log('127.0.0.1 "POST /v1/models/Doubler:predict" 200 Doubler fmt-1')
    with running_server(*DOUBLER, "--enable_latency_logging", "false") as server:
        requests.post(f"{server.url}/v1/models/Doubler:predict", json={"instances": [1]},
                      headers={"x-request-id": "plain-1"}, timeout=30)
        server.wait_for_log("200 POST /v1/models/Doubler:predict (127.0.0.1) model=Doubler")
        [line] = [line for line in server.lines if "request_id=plain-1" in line and "access" in line]
        assert "predict=" not in line and "queue=" not in line


def test_an_access_log_format_with_an_unknown_atom_is_refused():
    result = modelhost(*DOUBLER, "--access_log_format", "%(h)s %(nope)s")
    assert result.returncode == 2 and "--access_log_format names 'nope'" in result.stderr


def test_timeout_keep_alive_closes_an_idle_connection():
    with running_server(*DOUBLER, "--timeout-keep-alive", "1") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
            assert idle.recv(1) == b""  # closed by the server, not by this 30 s timeout


def test_grpc_max_receive_message_length_bounds_grpc_alone():
    with running_server("--grpc_max_receive_message_length", "1000", "--plugin",
                        "fixture_plugins.behaving:Parameters") as server:
        request = grpc_v2.messages().ModelInferRequest(model_name="Parameters", inputs=[
            {"name": "x", "datatype": "FP32", "shape": [1000]}], raw_input_contents=[np.zeros(1000, np.float32).tobytes()])
        with grpc.insecure_channel(server.grpc_address) as channel:
            infer = channel.unary_unary(f"/{grpc_v2.SERVICE}/ModelInfer", request_serializer=type(request).SerializeToString)
            with pytest.raises(grpc.RpcError) as caught:
                infer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        rest = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1000], "data": [0.0] * 1000}]}
        assert requests.post(f"{server.url}/v2/models/Parameters/infer", json=rest, timeout=30).status_code == 200


def test_flags_without_meaning_here_are_accepted_and_named_once():
    with running_server(*DOUBLER, "--max_threads", "8") as server:
        assert server.log.count("--max_threads has no effect here") == 1


@pytest.mark.parametrize("choice, loop", [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")])
def test_event_loop_picks_the_loop_of_the_server_and_its_workers(choice, loop):
    """In the server process (--replicas 0) and in a worker, whose async model needs a loop of its own."""
    with running_server("--event-loop", choice, "--plugin", "here=fixture_plugins.awaiting:NamesItsLoop",
                        "--plugin", "worker=fixture_plugins.awaiting:NamesItsLoop", "--replicas", "here=0",
                        "--replicas", "worker=1") as server:
        for model in ("here", "worker"):
            answer = requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": [1]}, timeout=30)
            assert answer.json() == {"predictions": [loop]}, model


def test_enable_docs_url_false_serves_no_docs_pages():
    with running_server(*DOUBLER, "--enable_docs_url", "false") as server:
        for path in ("/docs", "/docs/static/swagger-ui-bundle.js", "/v2/models/Doubler/docs"):
            assert requests.get(server.url + path, timeout=30).status_code == 404, path
        assert not [path for path in requests.get(server.url + "/openapi.json", timeout=30).json()["paths"]
                    if "docs" in path]


def test_every_flag_of_kserves_own_parser_is_taken():
    """Each option string of ``kserve.model_server.parser``, with a value it takes, parsed by modelhost's serve."""
    refused = in_another_process("""
        import argparse, json
        from kserve import model_server
        from modelhost.cli import build_parser

        def value(action):
            if action.nargs == 0:  # store_true: no value
                return []
            if action.choices:
                return [str(list(action.choices)[-1])]
            if action.type is int:
                return ["1"]
            return ["true" if isinstance(action.default, bool) else "x"]

        class Refused(Exception):
            pass

        class Parser(argparse.ArgumentParser):
            def error(self, message):
                raise Refused(message)

        refused = {}
        for action in model_server.parser._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                parser = build_parser()
                serve = parser._subparsers._group_actions[0].choices["serve"]
                serve.error = Parser.error.__get__(serve)
                try:
                    serve.parse_args([option, *value(action)])
                except Refused as refusal:
                    refused[option] = str(refusal)
        print(json.dumps({"refused": refused, "flags": len(model_server.parser._actions)}))
    """)
    result = json.loads(refused)
    assert result["flags"] > 20  # the parser was really read
    assert result["refused"] == {}


def test_event_loop_auto_falls_back_to_asyncio_without_uvloop_and_uvloop_asked_for_is_said_missing(monkeypatch):
    from modelhost import event_loops

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvloop" else found(name))
    assert event_loops.resolve("auto") == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        event_loops.resolve("uvloop")

"""The transformer role: a modelhost transformer (``--predictor_host``) in front of a modelhost predictor, both real
servers on 127.0.0.1, over each predictor protocol.

Through ``PlusOne`` (the transformer adds one) to ``Judging`` (the predictor doubles), x becomes (x + 1) * 2.
"""

import http.server
import re
import socket
import socketserver
import threading

import json
import queue

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from support import free_port, plugin_env, running_server, wait_until
from test_tls import make_pair, ready

TRANSFORMER = ["--plugin", "m=fixture_plugins.transforming:PlusOne", "--plugin", "words=fixture_plugins.transforming:Relays"]
PREDICTOR = ["--replicas", "0", "--plugin", "m=fixture_plugins.transforming:Judging",
             "--plugin", "words=fixture_plugins.generating:Words"]
# Each protocol once in a worker process and once in the server process would double the servers: they alternate.
ROLES = {"v1": "1", "v2": "0", "grpc-v2": "1"}


def address(server, protocol: str) -> str:
    """Where a transformer finds this predictor: its gRPC port for grpc-v2, else its HTTP one."""
    return server.grpc_address if protocol == "grpc-v2" else server.url.removeprefix("http://")


def v1(server, instances, **headers) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/m:predict", json={"instances": instances}, headers=headers,
                         timeout=30)


def v2(server, data) -> requests.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(data)], "data": data}]}
    return requests.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)


@pytest.fixture(scope="module")
def predictor():
    with running_server(*PREDICTOR) as server:
        yield server


@pytest.fixture(scope="module", params=list(ROLES))
def protocol(request):
    return request.param


@pytest.fixture(scope="module")
def transformer(predictor, protocol):
    with running_server("--replicas", ROLES[protocol], *TRANSFORMER, "--predictor_host", address(predictor, protocol),
                        "--predictor_protocol", protocol, "--predictor_request_timeout_seconds", "2") as server:
        yield server


def test_v1_and_v2_requests_go_through_the_predictor(transformer, protocol):
    assert v1(transformer, [[1, 2], [3, 4]]).json() == {"predictions": [[4, 6], [8, 10]]}
    [output] = v2(transformer, [1.5, 2]).json()["outputs"]
    assert output["data"] == [5.0, 6.0]
    if protocol != "v1":  # V1 carries JSON numbers, not tensors: names and datatypes stay behind
        assert output == {"name": "x", "datatype": "FP32", "shape": [2], "data": [5.0, 6.0]}


def test_a_generation_passes_through_the_transformer_piece_by_piece(transformer, protocol):
    answer = requests.post(f"{transformer.url}/v2/models/words/generate_stream", json={"text_input": "hi", "count": 3},
                           timeout=30)
    events = [json.loads(event.removeprefix("data: ")) for event in answer.text.split("\n\n") if event]
    texts = [event.get("text_output", event) for event in events]
    if protocol == "v1":  # V1 has no streams: the predictor is asked to predict, which a model that generates cannot
        assert texts == [{"error": "the predictor answered 501: model 'words' does not predict (no predict hook): it "
                                   "answers generate and embed"}], texts
    else:
        assert texts == ["<word0 >", "<word1 >", "<word2 >"]
        with grpcclient.InferenceServerClient(transformer.grpc_address) as client:
            answers: queue.Queue = queue.Queue()
            client.start_stream(callback=lambda result, error: answers.put(error or result.as_numpy("text_output")))
            text = grpcclient.InferInput("text_input", [1], "BYTES")
            text.set_data_from_numpy(np.array([b"hi"], dtype=object))
            client.async_stream_infer("words", [text], parameters={"count": 2})
            assert [answers.get(timeout=30)[0] for _ in range(2)] == [b"<word0 >", b"<word1 >"]
            client.stop_stream()


def test_the_request_id_reaches_the_predictor_and_the_access_line_shows_its_share(transformer, predictor, protocol):
    request_id = f"through-the-transformer-{protocol}"
    assert v1(transformer, [[1]], **{"x-request-id": request_id}).status_code == 200
    predictor.wait_for_log(f"request_id={request_id}")
    transformer.wait_for_log(re.compile(f"modelhost.access.*request_id={request_id}"))
    access = [line for line in transformer.lines if "modelhost.access" in line and request_id in line]
    assert len(access) == 1 and " predict=" in access[0] and " predictor=" in access[0], access


def test_the_predictors_errors_are_named_as_its_own(transformer, protocol):
    refused = v1(transformer, [[-5]])
    assert refused.status_code == 400
    assert "the predictor answered" in refused.json()["error"] and "negative inputs" in refused.json()["error"]
    failed = v1(transformer, [[12]])  # 13 at the predictor
    assert failed.status_code == 500
    assert "the predictor answered" in failed.json()["error"] and "unlucky" in failed.json()["error"]
    assert v1(transformer, [[1]]).status_code == 200


def test_a_predictor_past_the_timeout_gets_504(transformer):
    late = v1(transformer, [[6]])  # 7 at the predictor, which takes 5 s
    assert late.status_code == 504
    assert late.json() == {"error": "the predictor did not answer within 2s"}
    assert v1(transformer, [[1]]).status_code == 200


def test_the_prometheus_metrics_have_the_predictors_share(transformer):
    assert v1(transformer, [[1]]).status_code == 200
    metrics = requests.get(f"{transformer.url}/metrics", timeout=10).text
    assert 'modelhost_request_predictor_seconds_count{model_name="m"}' in metrics


@pytest.mark.parametrize("protocol", ["v1", "grpc-v2"])
def test_an_unreachable_predictor_gets_503_after_the_retries(protocol):
    port = free_port()
    with running_server(*TRANSFORMER, "--predictor_host", f"127.0.0.1:{port}", "--predictor_protocol", protocol,
                        "--predictor_request_retries", "2") as transformer:
        answer = v1(transformer, [[1]])
        assert answer.status_code == 503
        assert answer.json() == {"error": "the predictor cannot be reached"}
        transformer.wait_for_log(f"predictor 127.0.0.1:{port}, model 'm': the predictor cannot be reached")
        assert transformer.log.count("cannot be reached (") == 2 + 1  # two retries logged, then the failure


class Forwarder(socketserver.BaseRequestHandler):
    """Each connection piped to the port ``self.server.to``."""

    def handle(self):
        with socket.create_connection(("127.0.0.1", self.server.to)) as upstream:
            back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
            back.start()
            pipe(self.request, upstream)
            back.join(30)


def pipe(source: socket.socket, sink: socket.socket) -> None:
    while data := source.recv(65536):
        sink.sendall(data)
    sink.shutdown(socket.SHUT_WR)


def test_a_retry_reaches_a_predictor_that_comes_up_meanwhile(predictor):
    # The predictor "comes up" when its address starts taking connections, already ready: a server's own port
    # opens before its model is, and a predictor that answers 503 is not retried (as in KServe).
    port = free_port()
    with running_server(*TRANSFORMER, "--predictor_host", f"127.0.0.1:{port}",
                        "--predictor_request_retries", "20") as transformer:
        answers = []
        asking = threading.Thread(target=lambda: answers.append(v1(transformer, [[1]])))
        asking.start()
        transformer.wait_for_log("trying again")
        forwarding = socketserver.ThreadingTCPServer(("127.0.0.1", port), Forwarder)
        # Its connections stay open for as long as the transformer keeps them: closing it must not wait for them.
        forwarding.daemon_threads = True
        forwarding.to = int(address(predictor, "v1").rsplit(":", 1)[1])
        threading.Thread(target=forwarding.serve_forever, daemon=True).start()
        try:
            asking.join(60)
        finally:
            forwarding.shutdown()
            forwarding.server_close()
        assert answers[0].status_code == 200 and answers[0].json() == {"predictions": [[4]]}


def test_with_the_health_check_the_transformer_is_ready_only_while_the_predictor_is():
    port = free_port()
    with running_server(*TRANSFORMER, "--predictor_host", f"127.0.0.1:{port}", "--enable_predictor_health_check",
                        "--health_interval_s", "0.2", ready=None) as transformer:
        transformer.wait_for_log(f"its predictor at 127.0.0.1:{port} is not ready")
        assert requests.get(f"{transformer.url}/v2/health/ready", timeout=10).status_code == 503
        assert requests.get(f"{transformer.url}/v2/models/m/ready", timeout=10).status_code == 503
        with running_server(*PREDICTOR, "--http_port", str(port)):
            wait_until(lambda: requests.get(f"{transformer.url}/v2/health/ready", timeout=10).status_code == 200)
            assert v1(transformer, [[1]]).json() == {"predictions": [[4]]}
        wait_until(lambda: requests.get(f"{transformer.url}/v2/models/m/ready", timeout=10).status_code == 503)


def test_without_the_health_check_the_transformer_is_ready_alone():
    with running_server(*TRANSFORMER, "--predictor_host", f"127.0.0.1:{free_port()}") as transformer:
        assert requests.get(f"{transformer.url}/v2/health/ready", timeout=10).status_code == 200


class Nonsense(http.server.BaseHTTPRequestHandler):
    """A predictor that answers every request with 200 and a body that is no answer."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"not json!")

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_predictor_answering_nonsense_gets_502(protocol):
    nonsense = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Nonsense)
    threading.Thread(target=nonsense.serve_forever, daemon=True).start()
    try:
        with running_server(*TRANSFORMER, "--predictor_host", f"127.0.0.1:{nonsense.server_address[1]}",
                            "--predictor_protocol", protocol) as transformer:
            answer = v1(transformer, [[1]])
            assert answer.status_code == 502
            assert answer.json()["error"].startswith(f"the predictor answered something that is not {protocol.upper()}")
            assert v1(transformer, [[1]]).status_code == 502  # and it keeps serving
    finally:
        nonsense.shutdown()


def test_a_plugins_own_predict_calls_the_predictor_through_the_client_it_is_given(predictor):
    with running_server("--plugin", "m=fixture_plugins.transforming:AsksTwice", "--predictor_host",
                        address(predictor, "v2"), "--predictor_protocol", "v2") as transformer:
        assert v1(transformer, [[1, 2]]).json() == {"predictions": [[4, 8]]}  # twice x * 2


@pytest.mark.parametrize("protocol", list(ROLES))
def test_predictor_use_ssl_reaches_a_predictor_serving_tls(tmp_path, protocol):
    cert, key = make_pair(tmp_path, "predictor")
    with running_server(*PREDICTOR, "--ssl_certfile", str(cert), "--ssl_keyfile", str(key), ready=None) as predictor:
        ready(predictor, cert)
        # The transformer trusts the predictor's certificate as Python's ssl and gRPC's core read trusted roots.
        env = {**plugin_env(), "SSL_CERT_FILE": str(cert), "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
        with running_server(*TRANSFORMER, "--predictor_host", address(predictor, protocol).removeprefix("https://"),
                            "--predictor_protocol", protocol, "--predictor_use_ssl", "true", env=env) as transformer:
            assert v1(transformer, [[1, 2]]).json() == {"predictions": [[4, 6]]}

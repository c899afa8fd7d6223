"""The Open Inference Protocol over gRPC, against a running server in both modes: Triton's client, a raw stub
built from the server's own messages (in the same process as tritonclient's: their pools never meet), and
the errors as gRPC status codes."""

import signal
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelhost.protocol import grpc_v2
from support import in_another_process, plugin_env, running_server, wait_for_file

MODELS = ["--plugin", "fixture_plugins.behaving:Parameters", "--plugin", "fixture_plugins.awaiting:RaisesSync",
          "--plugin", "fixture_plugins.behaving:Declared", "--plugin", "fixture_plugins.behaving:Gate",
          "--plugin", "fixture_plugins.broken:FailsToLoad"]
EVERY_DATATYPE = {
    "BOOL": np.array([True, False]), "UINT8": np.array([0, 255], np.uint8), "UINT16": np.array([1, 65535], np.uint16),
    "UINT32": np.array([2, 2**32 - 1], np.uint32), "UINT64": np.array([3, 2**64 - 1], np.uint64),
    "INT8": np.array([-128, 127], np.int8), "INT16": np.array([-1, 2], np.int16),
    "INT32": np.array([-(2**31), 5], np.int32), "INT64": np.array([-(2**63), 2**63 - 1], np.int64),
    "FP16": np.array([0.5, -2], np.float16), "FP32": np.array([1.5, np.inf], np.float32),
    "FP64": np.array([np.nan, 1e300]), "BYTES": np.array([b"\xff\x00not utf-8", "héllo".encode()], dtype=object),
}


@pytest.fixture(scope="module")
def server(runner):
    args, env = runner
    with running_server(*args, *MODELS, ready="/v2/models/Parameters/ready", env={**plugin_env(), **env},
                        timeout=120) as server:
        for model in ("Gate", "Declared", "RaisesSync"):  # every model but FailsToLoad, which never is
            server.wait_until_ready(120, f"/v2/models/{model}/ready")  # on Ray, deployed one after another
        yield server


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.grpc_address) as client:
        yield client


def call(server, method: str, request, metadata=(), timeout=30):
    """A raw unary call with the server's own message classes; (response, trailing metadata)."""
    messages = grpc_v2.messages()
    answer_type = getattr(messages, type(request).__name__.replace("Request", "Response"))
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = channel.unary_unary(f"/{grpc_v2.SERVICE}/{method}", request_serializer=type(request).SerializeToString,
                                   response_deserializer=answer_type.FromString)
        response, rpc = stub.with_call(request, metadata=metadata, timeout=timeout)
        return response, dict(rpc.trailing_metadata())


def status_of(server, method: str, request, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(server, method, request, **kwargs)
    return caught.value.code(), caught.value.details()


def test_health_readiness_and_metadata(client):
    assert client.is_server_live()
    assert not client.is_server_ready()  # FailsToLoad is not: as over HTTP, the server is ready when all are
    assert client.is_model_ready("Parameters") and not client.is_model_ready("FailsToLoad")
    assert not client.is_model_ready("nobody")  # OK with ready false, as Triton answers: not NOT_FOUND
    assert client.get_server_metadata().name == "modelhost"
    metadata = client.get_model_metadata("Declared")
    assert (metadata.versions, metadata.inputs[0].name, list(metadata.inputs[0].shape)) == (["7"], "x", [-1, 3])


def test_every_datatype_round_trips_in_raw_contents(client):
    inputs = []
    for datatype, array in EVERY_DATATYPE.items():
        tensor = triton.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("Parameters", inputs, request_id="v2-id", parameters={"note": "hi", "count": 3})
    for datatype, array in EVERY_DATATYPE.items():
        answered = result.as_numpy(datatype.lower())
        np.testing.assert_array_equal(answered, array)
        assert answered.dtype == array.dtype
    response = result.get_response()
    assert response.id == "v2-id" and response.model_name == "Parameters"
    assert {name: value.string_param or value.int64_param for name, value in response.parameters.items()} == \
        {"note": "hi", "count": 3}
    assert response.outputs[0].parameters["unit"].string_param == "m"


def test_typed_contents_decode_and_the_request_id_comes_back_in_trailing_metadata(server):
    messages = grpc_v2.messages()
    request = messages.ModelInferRequest(model_name="Parameters", inputs=[
        {"name": "i", "datatype": "INT32", "shape": [2], "contents": {"int_contents": [-4, 9]}},
        {"name": "f", "datatype": "FP64", "shape": [1, 1], "contents": {"fp64_contents": [0.25]}},
        {"name": "b", "datatype": "BYTES", "shape": [1], "contents": {"bytes_contents": [b"\x80raw"]}},
    ])
    response, trailing = call(server, "ModelInfer", request, metadata=(("x-request-id", "grpc-42"),))
    assert trailing["x-request-id"] == "grpc-42"
    assert [(output.name, output.datatype, list(output.shape)) for output in response.outputs] == \
        [("i", "INT32", [2]), ("f", "FP64", [1, 1]), ("b", "BYTES", [1])]
    assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [-4, 9]
    assert response.raw_output_contents[2] == b"\x04\x00\x00\x00\x80raw"
    server.wait_for_log("200 ModelInfer Parameters")
    server.wait_for_log("request_id=grpc-42")
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'modelhost_requests_total{model_name="Parameters",protocol="grpc",status="200"}' in metrics


@pytest.mark.parametrize("request_fields, code, message", [
    ({"model_name": "nobody", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}],
      "raw_input_contents": [b"\0\0\0\0"]}, grpc.StatusCode.NOT_FOUND, "Request for unknown model: 'nobody' is not served here"),
    ({"model_name": "Parameters", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2]}],
      "raw_input_contents": [b"\0\0\0\0"]}, grpc.StatusCode.INVALID_ARGUMENT, "shape [2] of FP32 needs 8 bytes"),
    ({"model_name": "Parameters", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}],
      "raw_input_contents": [b"\0\0\0\0", b"more"]}, grpc.StatusCode.INVALID_ARGUMENT, "2 raw_input_contents for 1"),
    ({"model_name": "Parameters", "inputs": [{"name": "x", "datatype": "FP16", "shape": [1],
                                              "contents": {"fp32_contents": [1]}}],
      }, grpc.StatusCode.INVALID_ARGUMENT, "FP16 has no typed contents"),
    ({"model_name": "Parameters", "inputs": [{"name": "x", "datatype": "INT8", "shape": [1],
                                              "contents": {"int_contents": [300]}}],
      }, grpc.StatusCode.INVALID_ARGUMENT, "out of INT8's range"),
    ({"model_name": "Parameters", "inputs": [{"name": "x", "datatype": "COMPLEX", "shape": [1]}]},
     grpc.StatusCode.INVALID_ARGUMENT, "unknown datatype 'COMPLEX'"),
    ({"model_name": "FailsToLoad", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}],
      "raw_input_contents": [b"\0\0\0\0"]}, grpc.StatusCode.UNAVAILABLE, "model 'FailsToLoad' is not ready"),
], ids=["unknown model", "raw size", "raw count", "fp16 typed", "int8 range", "datatype", "not ready"])
def test_errors_have_their_code_and_the_same_message_as_rest(server, request_fields, code, message):
    found, details = status_of(server, "ModelInfer", grpc_v2.messages().ModelInferRequest(**request_fields))
    assert found == code and message in details


def test_a_plugin_that_raises_is_internal_with_its_reason(client):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("RaisesSync", [bytes_input("x")])
    assert caught.value.status() == "StatusCode.INTERNAL"
    assert caught.value.message() == "model 'RaisesSync': predict hook raised RuntimeError: the model blew up"


def test_a_message_over_max_buffer_size_is_refused_and_the_server_serves_on(mode):
    with running_server(*mode, "--max_buffer_size", "1000", *MODELS[:2]) as server:
        with triton.InferenceServerClient(server.grpc_address) as client:
            big = triton.InferInput("x", [1000], "FP32")
            big.set_data_from_numpy(np.zeros(1000, np.float32))
            with pytest.raises(InferenceServerException) as caught:
                client.infer("Parameters", [big])
            assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
            small = triton.InferInput("x", [2], "FP32")
            small.set_data_from_numpy(np.ones(2, np.float32))
            assert client.infer("Parameters", [small]).as_numpy("x").tolist() == [1, 1]


def test_a_client_deadline_withdraws_the_request_and_is_deadline_exceeded(server, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    request = grpc_v2.messages().ModelInferRequest(
        model_name="Gate", inputs=[{"name": "x", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [1]}}],
        parameters={"started": {"string_param": str(started)}, "release": {"string_param": str(release)}})
    try:
        code, _ = status_of(server, "ModelInfer", request, timeout=1)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        # Held until the server has withdrawn it: released at the client's deadline, the hook could finish first.
        server.wait_for_log("499 ModelInfer Gate")
    finally:
        release.touch()


def test_repository_statistics_and_config_through_tritons_clients(server, client):
    client.unload_model("Parameters")
    assert not client.is_model_ready("Parameters")  # not served, so not ready: as Triton answers
    with pytest.raises(InferenceServerException, match="NOT_FOUND.*not served here"):  # as over HTTP: 404
        client.get_model_metadata("Parameters")
    client.load_model("Parameters")
    assert client.is_model_ready("Parameters")
    index = {model.name: model.state for model in client.get_model_repository_index().models}
    assert index["Parameters"] == "READY" and index["FailsToLoad"] == "UNAVAILABLE", [(m.name, m.state, m.reason) for m in client.get_model_repository_index().models]

    tensor = triton.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 3), np.float32))
    before = time.time()
    client.infer("Declared", [tensor])
    with pytest.raises(InferenceServerException):
        client.infer("RaisesSync", [bytes_input("x")])
    rest = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    for statistics in (client.get_inference_statistics("Declared", as_json=True),
                       rest.get_inference_statistics("Declared")):
        [declared] = statistics["model_stats"]
        success = declared["inference_stats"]["success"]
        assert (declared["name"], declared["version"], int(success["count"])) == ("Declared", "7", 1)
        assert int(success["ns"]) > 0 and int(declared["inference_stats"]["compute_infer"]["count"]) == 1
        assert before * 1000 - 1 <= int(declared["last_inference"]) <= time.time() * 1000  # milliseconds since the epoch
    [raises] = rest.get_inference_statistics("RaisesSync")["model_stats"]
    assert int(raises["inference_stats"]["fail"]["count"]) >= 1

    for config in (client.get_model_config("Declared", as_json=True)["config"], rest.get_model_config("Declared")):
        assert (config["name"], config["platform"], config["input"][0]["data_type"], config["input"][0]["dims"]) \
            == ("Declared", "numpy", "TYPE_FP32", ["-1", "3"] if isinstance(config["input"][0]["dims"][0], str)
                else [-1, 3])
    assert requests.get(server.url + "/v2/models/nobody/stats", timeout=10).status_code == 404


def bytes_input(value: str):
    tensor = triton.InferInput("x", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=object))
    return tensor


def health_of(server, service: str = "") -> int:
    with grpc.insecure_channel(server.grpc_address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_the_standard_health_service_follows_the_servers_readiness(server):
    assert health_of(server) == health_of(server, grpc_v2.SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_kserves_grpc_client_infers(server):
    printed = in_another_process(f"""
        import asyncio
        import numpy as np
        from kserve import InferenceGRPCClient, InferInput, InferRequest

        async def main():
            client = InferenceGRPCClient("{server.grpc_address}")
            x = InferInput("x", [2], "FP32")
            x.set_data_from_numpy(np.array([1.5, 2.5], np.float32))
            response = await client.infer(InferRequest(model_name="Parameters", infer_inputs=[x]))
            print(response.outputs[0].as_numpy().tolist(), await client.is_model_ready("Parameters"))
            await client.close()

        asyncio.run(main())
    """)
    assert printed.split() == ["[1.5,", "2.5]", "True"]


def test_two_server_processes_serve_grpc_on_one_port():
    with running_server("--workers", "2", *MODELS[:2]) as server:
        with triton.InferenceServerClient(server.grpc_address) as client:
            for _ in range(10):
                assert client.infer("Parameters", [bytes_input("x")]).as_numpy("x").tolist() == [b"x"]
        assert server.log.count("serving gRPC on 127.0.0.1") == 2


def test_sigterm_lets_a_call_in_flight_finish_and_refuses_new_ones(mode, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    request = grpc_v2.messages().ModelInferRequest(
        model_name="Gate", inputs=[{"name": "x", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [7]}}],
        parameters={"started": {"string_param": str(started)}, "release": {"string_param": str(release)}})
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:Gate") as server:
        answers: list = []
        in_flight = threading.Thread(target=lambda: answers.append(call(server, "ModelInfer", request)))
        in_flight.start()
        wait_for_file(started)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("shutting down: waiting up to")
        code, details = status_of(server, "ModelInfer", request)
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
        release.touch()
        in_flight.join(30)
        assert server.process.wait(30) == 0
    [(response, _)] = answers
    assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [7]


def test_a_worker_killed_during_a_call_is_unavailable_naming_the_cause():
    with running_server("--replicas", "1", "--plugin", "fixture_plugins.workers:Fragile") as server:
        with triton.InferenceServerClient(server.grpc_address) as client:
            with pytest.raises(InferenceServerException) as caught:
                client.infer("Fragile", [bytes_input("kill")])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert "its worker was killed by SIGKILL during this request" in caught.value.message()


def test_grpc_can_be_turned_off():
    with running_server("--enable_grpc", "false", *MODELS[:2]) as server:
        assert server.grpc_address is None and "serving gRPC" not in server.log


def test_the_bearer_token_guards_grpc_but_not_its_probes(mode):
    with running_server(*mode, *MODELS[:2], env={**plugin_env(), "MODELHOST_AUTH_TOKEN": "sesame"}) as server:
        assert health_of(server) == health_pb2.HealthCheckResponse.SERVING  # probes carry no token
        with triton.InferenceServerClient(server.grpc_address) as client:
            assert client.is_server_live() and client.is_model_ready("Parameters")
            with pytest.raises(InferenceServerException) as caught:
                client.infer("Parameters", [bytes_input("x")])
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            answer = client.infer("Parameters", [bytes_input("x")], headers={"authorization": "Bearer sesame"})
            assert answer.as_numpy("x").tolist() == [b"x"]


def test_a_full_queue_is_resource_exhausted(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    request = grpc_v2.messages().ModelInferRequest(
        model_name="Gate", inputs=[{"name": "x", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [1]}}],
        parameters={"started": {"string_param": str(started)}, "release": {"string_param": str(release)}})
    with running_server("--replicas", "1", "--max_queue_size", "0", "--plugin", "fixture_plugins.behaving:Gate") as server:
        held = threading.Thread(target=call, args=(server, "ModelInfer", request))
        held.start()
        wait_for_file(started)  # the one replica is busy, and no request may wait
        code, details = status_of(server, "ModelInfer", request)
        release.touch()
        held.join(30)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue_size" in details

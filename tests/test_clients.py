"""Triton's and KServe's own clients, unchanged, against a running modelhost."""

import json

import numpy as np
import pytest
import tritonclient.http as triton

from support import in_another_process, running_server


@pytest.fixture(scope="module")
def server(installed_env, mode):
    with running_server(*mode, "--model", "echo", "--plugin", "fixture_plugins.behaving:Declared", env=installed_env) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("echo") and not client.is_model_ready("nobody")
    assert client.get_server_metadata()["name"] == "modelhost"
    assert client.get_model_metadata("Declared")["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [-1]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_round_trip(client, binary):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    words = np.array([b"hello", "wörld".encode()], dtype=np.object_)
    inputs = [triton.InferInput("x", [2, 3], "FP32"), triton.InferInput("words", [2], "BYTES")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(words, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("x", "words")]
    result = client.infer("echo", inputs, outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("x"), x)
    # tritonclient hands BYTES back as str when they came as JSON, as bytes when binary
    assert [w if isinstance(w, bytes) else w.encode() for w in result.as_numpy("words")] == list(words)
    assert result.get_response()["id"] == "r-1"


def test_errors_surface_as_client_exceptions(client):
    x = triton.InferInput("x", [1], "FP32")
    x.set_data_from_numpy(np.zeros(1, dtype=np.float32), binary_data=True)
    with pytest.raises(triton.InferenceServerException,
                       match="Request for unknown model: 'nobody' is not served here"):
        client.infer("nobody", [x])


def test_an_unknown_path_leaves_the_clients_pooled_connection_usable(client):
    # Triton's client reuses one keep-alive connection: had the 404 closed it unannounced, the next call would
    # fail with "connection closed". Trace settings are a Triton extension modelhost does not serve.
    x = triton.InferInput("x", [1], "FP32")
    x.set_data_from_numpy(np.ones(1, dtype=np.float32))
    for _ in range(20):
        with pytest.raises(triton.InferenceServerException, match="no such path: GET /v2/trace/setting"):
            client.get_trace_settings()
        np.testing.assert_array_equal(client.infer("echo", [x]).as_numpy("x"), [1.0])


def test_kserve_rest_client_v1_and_v2(server):
    answers = json.loads(in_another_process(f"""
        import asyncio, json
        import numpy as np
        from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

        async def talk(url):
            v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
            assert await v1.is_server_live(url) and await v1.is_model_ready(url, "echo")
            assert await v1.infer(url, {{"instances": [[1, 2]]}}, model_name="echo") == {{"predictions": [[1, 2]]}}
            v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
            assert await v2.is_server_ready(url) and await v2.is_model_ready(url, "Declared")
            answers = []
            for binary in (False, True):
                x = InferInput("x", [2, 3], "FP32")
                x.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), binary_data=binary)
                request = InferRequest(model_name="Declared", infer_inputs=[x], request_id="k-1")
                answer = await v2.infer(url, request, model_name="Declared")
                (output,) = answer.outputs
                answers.append([answer.id, output.name, output.datatype, output.as_numpy().tolist()])
            return answers

        print(json.dumps(asyncio.run(talk("{server.url}"))))
    """))
    assert answers == [["k-1", "sum", "FP32", [3.0, 12.0]]] * 2

"""What crosses between the server and a worker process: answers and requests of any number of tensors.

An answer of 1,023 tensors or more once killed its worker: it went out in one
``sendmsg``, which takes at most ``SC_IOV_MAX`` (1,024) parts (issue 34).
"""

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Optional

import grpc
import numpy as np
import orjson
import pytest
import requests

from modelhost.protocol import grpc_v2
from modelhost.runtime.channel import IN_BAND_BELOW, SPILL_ABOVE, SPILLED, AsyncChannel, BlockingChannel, encode, lengths
from modelhost.runtime.spill import Spill
from support import running_server, wait_until

# Each in a worker process of its own (no --replicas 0): a synchronous model, whose worker answers with
# BlockingChannel, and an awaiting one, whose worker answers with AsyncChannel.
MODELS = ["--plugin", "echo=fixture_plugins.behaving:Doubler",
          "--plugin", "awaiting=fixture_plugins.echoing:AwaitingDoubler"]
# One-element tensors (the smallest request that reached the limit: 1,023 inputs in 23 KB), and tensors each large
# enough to cross out of band, a part of the frame each.
MANY = [(1023, 1), (5000, 1), (1500, IN_BAND_BELOW // 4)]


def tensors(count: int, size: int) -> list[np.ndarray]:
    """Each one different, so that an answer that mixes them up shows."""
    return [np.full(size, index, np.float32) for index in range(count)]


def blocking_to_async(message: object, spill: Optional[Spill] = None) -> object:
    """``message`` sent from a worker's blocking end, as the server's end receives it."""
    async def exchange():
        ours, theirs = socket.socketpair()
        receiver = await AsyncChannel.open(ours)
        try:
            _, received = await asyncio.gather(asyncio.to_thread(BlockingChannel(theirs, spill).send, message),
                                               receiver.receive())
            return received
        finally:
            receiver.close()
            theirs.close()

    return asyncio.run(asyncio.wait_for(exchange(), 60))


def async_to_blocking(message: object, spill: Optional[Spill] = None) -> object:
    """``message`` sent from the server's end, as a worker's blocking end receives it."""
    async def exchange():
        ours, theirs = socket.socketpair()
        sender = await AsyncChannel.open(ours, spill)
        try:
            _, received = await asyncio.gather(sender.send(message), asyncio.to_thread(BlockingChannel(theirs).receive))
            return received
        finally:
            sender.close()
            theirs.close()

    return asyncio.run(asyncio.wait_for(exchange(), 60))


def test_a_message_of_5000_tensors_each_a_part_of_its_own_crosses_either_way():
    message = tensors(5000, IN_BAND_BELOW // 4)
    assert len(encode(message)) == 5002 > os.sysconf("SC_IOV_MAX")  # a header, the pickle, and each tensor
    for received in (blocking_to_async(message), async_to_blocking(message)):
        assert len(received) == 5000
        assert all(np.array_equal(got, sent) for got, sent in zip(received, message))


def test_small_tensors_cross_inside_the_pickle_and_arrive_writable():
    message = tensors(5000, 1)
    assert len(encode(message)) == 2  # a header and the pickle, however many tensors it holds
    for received in (blocking_to_async(message), async_to_blocking(message)):
        assert all(np.array_equal(got, sent) for got, sent in zip(received, message))
        assert all(got.flags.writeable for got in received)  # a plugin may change its inputs in place


def spilled_objects(server_pid: int) -> list[str]:
    return [path.name for path in Path("/dev/shm").glob(f"modelhost-{server_pid}-*")]


def test_tensors_of_spill_above_or_more_cross_through_shared_memory_and_leave_nothing_behind():
    message = {"large": np.arange(SPILL_ABOVE // 4, dtype=np.float32), "small": np.arange(IN_BAND_BELOW)}
    spill = Spill(os.getpid(), 1)
    try:
        header = encode(message, spill)[0]
        assert [size & SPILLED for size in lengths(header[8:])] == [SPILLED, 0]  # only the large one, by name
        spill.sweep()
        for received in (blocking_to_async(message, spill), async_to_blocking(message, spill)):
            assert all(np.array_equal(received[name], message[name]) for name in message)
            assert received["large"].flags.writeable  # a private mapping: the plugin's own to change
            received["large"][0] = -1
            assert not spilled_objects(os.getpid())  # the receiver removed the name as it mapped the object
    finally:
        spill.sweep()  # a failed assertion leaves no 8 MiB object behind


def test_what_a_worker_never_took_is_swept_once_it_has_exited():
    with running_server("--plugin", "echo=fixture_plugins.behaving:Doubler") as server:
        large = np.arange(SPILL_ABOVE // 4 + 8, dtype=np.float32)
        assert np.array_equal(infer_over_rest(server, "echo", [large])["x0"], large * 2)
        assert not spilled_objects(server.process.pid)
        (worker,) = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        Spill(server.process.pid, int(worker)).put(memoryview(large))  # as if written just before it died
        assert spilled_objects(server.process.pid)
        os.kill(int(worker), signal.SIGKILL)
        server.wait_for_log("was killed by SIGKILL")
        wait_until(lambda: not spilled_objects(server.process.pid))


@pytest.fixture(scope="module")
def server():
    with running_server(*MODELS, ready="/v2/models/awaiting/ready") as server:
        server.wait_until_ready(60, "/v2/models/echo/ready")
        yield server


def infer_over_rest(server, model: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Binary tensors both ways: each input ``x<index>`` and its output by the same name."""
    names = [f"x{index}" for index in range(len(arrays))]
    header = orjson.dumps({
        "inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": array.nbytes}} for name, array in zip(names, arrays)],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in names],
    })
    answer = requests.post(f"{server.url}/v2/models/{model}/infer", data=header + b"".join(map(bytes, arrays)),
                           headers={"Inference-Header-Content-Length": str(len(header))}, timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    length = int(answer.headers["Inference-Header-Content-Length"])
    answered, offset = {}, length
    for output in orjson.loads(answer.content[:length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        answered[output["name"]] = np.frombuffer(answer.content[offset:offset + size], np.float32)
        offset += size
    assert offset == len(answer.content)
    return answered


def infer_over_grpc(server, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    messages = grpc_v2.messages()
    request = messages.ModelInferRequest(
        model_name="echo", inputs=[{"name": f"x{index}", "datatype": "FP32", "shape": list(array.shape)}
                                   for index, array in enumerate(arrays)],
        raw_input_contents=[array.tobytes() for array in arrays])
    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = channel.unary_unary(f"/{grpc_v2.SERVICE}/ModelInfer",
                                    request_serializer=messages.ModelInferRequest.SerializeToString,
                                    response_deserializer=messages.ModelInferResponse.FromString)
        response = infer(request, timeout=120)
    assert len(response.raw_output_contents) == len(response.outputs)
    return {output.name: np.frombuffer(raw, np.float32)
            for output, raw in zip(response.outputs, response.raw_output_contents)}


def assert_doubled(answered: dict[str, np.ndarray], arrays: list[np.ndarray]) -> None:
    assert sorted(answered) == sorted(f"x{index}" for index in range(len(arrays)))
    assert all(np.array_equal(answered[f"x{index}"], array * 2) for index, array in enumerate(arrays))


@pytest.mark.parametrize("model", ["echo", "awaiting"])
@pytest.mark.parametrize("count, size", MANY)
def test_an_answer_of_thousands_of_tensors_comes_back_from_a_worker_over_rest(server, model, count, size):
    server.wait_until_ready(60, f"/v2/models/{model}/ready")  # and not restarting after an earlier test's failure
    arrays = tensors(count, size)
    assert_doubled(infer_over_rest(server, model, arrays), arrays)


@pytest.mark.parametrize("count, size", MANY)
def test_an_answer_of_thousands_of_tensors_comes_back_from_a_worker_over_grpc(server, count, size):
    server.wait_until_ready(60, "/v2/models/echo/ready")
    arrays = tensors(count, size)
    assert_doubled(infer_over_grpc(server, arrays), arrays)

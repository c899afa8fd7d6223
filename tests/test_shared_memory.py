"""Triton's system shared-memory extension, driven by tritonclient's own clients and shared-memory helpers.

In the server process and in a worker, a model that doubles its inputs: a request's inputs are read from the
client's regions and its outputs written into them, over HTTP and gRPC. Where the model runs in a worker, the
worker maps the client's object itself; the server process never does. (On Ray: tests/test_ray.py.)
"""

import os
import secrets
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor, serialized_byte_size

from modelhost.runtime.shared_memory import LOOPBACK, Regions, is_loopback
from modelhost.errors import InvalidInput
from support import running_server, wait_until

PLUGINS = ["--plugin", "double=fixture_plugins.behaving:Doubler",
           "--plugin", "in_place=fixture_plugins.behaving:DoublesInPlace",
           "--plugin", "gate=fixture_plugins.behaving:Gate"]
DATA = np.arange(12, dtype=np.float32).reshape(3, 4)


class Region:
    """A client's region, made with tritonclient's helpers and destroyed after the test."""

    def __init__(self, size: int):
        self.name = f"r{secrets.token_hex(4)}"
        self.key = f"/modelhost-test-{self.name}"
        self.handle = shm.create_shared_memory_region(self.name, self.key, size)
        self.size = size

    def put(self, *arrays) -> None:
        shm.set_shared_memory_region(self.handle, list(arrays))

    def get(self, datatype, shape, offset: int = 0) -> np.ndarray:
        return shm.get_contents_as_numpy(self.handle, datatype, shape, offset)

    def destroy(self) -> None:
        if self.handle is not None:
            shm.destroy_shared_memory_region(self.handle)
            self.handle = None


@pytest.fixture
def regions():
    made: list[Region] = []

    def make(size: int) -> Region:
        made.append(Region(size))
        return made[-1]

    yield make
    for region in made:
        region.destroy()


@pytest.fixture(scope="module")
def served(mode):
    with running_server(*mode, *PLUGINS) as server:
        yield server


def clients(server):
    return [httpclient.InferenceServerClient(server.url.split("//")[1]),
            grpcclient.InferenceServerClient(server.grpc_address)]


def module_of(client):
    return httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient


def filled(regions, client) -> Region:
    """A new region holding DATA, registered with the client's server."""
    region = regions(DATA.nbytes)
    region.put(DATA)
    client.register_system_shared_memory(region.name, region.key, region.size)
    return region


def data_in(triton, region: Region):
    """Input ``x``, DATA's shape, its bytes in ``region``."""
    tensor = triton.InferInput("x", list(DATA.shape), "FP32")
    tensor.set_shared_memory(region.name, DATA.nbytes)
    return tensor


@pytest.mark.parametrize("front", ["http", "grpc"])
def test_inputs_and_outputs_in_regions_beside_binary_data_and_bytes(served, regions, front):
    client = clients(served)[front == "grpc"]
    triton = module_of(client)
    inputs, outputs = regions(DATA.nbytes * 2), regions(DATA.nbytes + 64)
    inputs.put(np.zeros(2, np.float32), DATA)  # the tensor 8 bytes into its region
    words = np.array([b"shared", b"", b"memory"], dtype=object)
    serialized = serialize_byte_tensor(words)
    texts = regions(256)
    texts.put(serialized)
    client.unregister_system_shared_memory()
    for region in (inputs, outputs, texts):
        client.register_system_shared_memory(region.name, region.key, region.size)
    status = client.get_system_shared_memory_status()
    listed = status if front == "http" else [
        {"name": name, "key": entry.key, "byte_size": entry.byte_size} for name, entry in status.regions.items()]
    assert {(entry["name"], entry["key"], int(entry["byte_size"])) for entry in listed} == {
        (region.name, region.key, region.size) for region in (inputs, outputs, texts)}

    from_region = triton.InferInput("x", list(DATA.shape), "FP32")
    from_region.set_shared_memory(inputs.name, DATA.nbytes, offset=8)
    sent = triton.InferInput("y", [2], "INT64")
    sent.set_data_from_numpy(np.array([5, 6], np.int64))
    text = triton.InferInput("t", [3], "BYTES")
    text.set_shared_memory(texts.name, serialized_byte_size(serialized))
    into_region = triton.InferRequestedOutput("x")
    into_region.set_shared_memory(outputs.name, DATA.nbytes, offset=64)
    result = client.infer("double", [from_region, sent, text],
                          outputs=[into_region, triton.InferRequestedOutput("y"), triton.InferRequestedOutput("t")])

    # As Triton's own shared-memory examples read an output: its description from the answer, its data from
    # the region.
    described = result.get_output("x")
    shape = [int(size) for size in (described["shape"] if front == "http" else described.shape)]
    assert shape == [3, 4] and "data" not in (described if front == "http" else {})
    assert (outputs.get(np.float32, shape, offset=64) == DATA * 2).all()
    assert (result.as_numpy("y") == [10, 12]).all()
    assert list(result.as_numpy("t")) == [b"sharedshared", b"", b"memorymemory"]

    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    assert 'modelhost_shared_memory_tensors_total{direction="input",model_name="double"}' in metrics
    assert 'modelhost_shared_memory_tensors_total{direction="output",model_name="double"}' in metrics

    client.unregister_system_shared_memory(texts.name)
    assert {entry["name"] if front == "http" else entry for entry in (
        client.get_system_shared_memory_status() if front == "http"
        else client.get_system_shared_memory_status().regions)} == {inputs.name, outputs.name}
    client.unregister_system_shared_memory()


def test_a_plugin_that_changes_its_inputs_in_place_leaves_the_clients_region_as_it_was(served, regions):
    client = clients(served)[0]
    region = filled(regions, client)
    assert (client.infer("in_place", [data_in(httpclient, region)]).as_numpy("x") == DATA * 2).all()
    assert (region.get(np.float32, DATA.shape) == DATA).all()
    client.unregister_system_shared_memory(region.name)


@pytest.mark.parametrize("front", ["http", "grpc"])
def test_slices_past_a_region_and_regions_not_registered_are_refused_and_the_server_serves_on(served, regions, front):
    client = clients(served)[front == "grpc"]
    triton = module_of(client)
    region = regions(DATA.nbytes)
    region.put(DATA)
    name = region.name
    with pytest.raises(InferenceServerException, match="run past the end"):
        client.register_system_shared_memory(f"{name}-big", region.key, region.size + 1)
    with pytest.raises(InferenceServerException, match="cannot be opened"):
        client.register_system_shared_memory(f"{name}-none", f"/modelhost-test-none-{secrets.token_hex(4)}", 8)
    with pytest.raises(InferenceServerException, match="directly under /dev/shm"):
        client.register_system_shared_memory(f"{name}-path", "/../etc/passwd", 8)
    client.register_system_shared_memory(name, region.key, region.size)
    with pytest.raises(InferenceServerException, match="already registered"):
        client.register_system_shared_memory(name, region.key, region.size)

    def infer(region_name, byte_size, offset=0, shape=DATA.shape):
        tensor = triton.InferInput("x", list(shape), "FP32")
        tensor.set_shared_memory(region_name, byte_size, offset=offset)
        return client.infer("double", [tensor])

    for arguments, message in [((name, DATA.nbytes, 4), "run past the end of region"),
                               ((name, DATA.nbytes - 4), "needs 48 bytes"),
                               ((f"{name}-never", DATA.nbytes), "no shared memory region"),
                               ((name, 8, 0, (2, 2)), "needs 16 bytes")]:
        with pytest.raises(InferenceServerException, match=message) as refused:
            infer(*arguments)
        assert refused.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert (infer(name, DATA.nbytes).as_numpy("x") == DATA * 2).all()
    client.unregister_system_shared_memory(name)


def test_region_parameters_that_do_not_add_up_get_400_naming_them(served, regions):
    region = regions(16)
    url = f"{served.url}/v2/models/double/infer"
    requests.post(f"{served.url}/v2/systemsharedmemory/region/{region.name}/register",
                  json={"key": region.key, "offset": 0, "byte_size": 16}, timeout=10).raise_for_status()
    tensor = {"name": "x", "datatype": "FP32", "shape": [4]}
    for parameters, message in [({"shared_memory_region": region.name}, "must be given together"),
                                ({"shared_memory_offset": 4}, "without shared_memory_region"),
                                ({"shared_memory_region": region.name, "shared_memory_byte_size": -1}, "0 or more"),
                                ({"shared_memory_region": 7, "shared_memory_byte_size": 16}, "region's name")]:
        answer = requests.post(url, json={"inputs": [{**tensor, "parameters": parameters}]}, timeout=10)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    both = {**tensor, "data": [1, 2, 3, 4],
            "parameters": {"shared_memory_region": region.name, "shared_memory_byte_size": 16}}
    answer = requests.post(url, json={"inputs": [both]}, timeout=10)
    assert answer.status_code == 400 and "carries data too" in answer.json()["error"]
    answer = requests.post(f"{served.url}/v2/systemsharedmemory/region/x/register", json={"key": 3}, timeout=10)
    assert answer.status_code == 400 and "'key'" in answer.json()["error"]
    requests.post(f"{served.url}/v2/systemsharedmemory/region/{region.name}/unregister", timeout=10)


def mapped_keys(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if "/dev/shm/modelhost-test-" in line}


def model_process(server, model: str) -> int:
    """The process ``model`` runs in: its worker's, or the server's own."""
    pid = server.process.pid
    workers = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
               if f"--name\0{model}\0" in Path(f"/proc/{child}/cmdline").read_text()]
    return workers[0] if workers else pid


def test_the_models_process_maps_the_clients_object_and_keeps_a_region_unregistered_meanwhile_until_done(
        served, regions, tmp_path):
    client = clients(served)[0]
    region = regions(DATA.nbytes)
    region.put(DATA)
    client.register_system_shared_memory(region.name, region.key, region.size)
    started, release = tmp_path / "started", tmp_path / "release"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(DATA.shape), "parameters": {
        "shared_memory_region": region.name, "shared_memory_byte_size": DATA.nbytes}}],
            "parameters": {"started": str(started), "release": str(release)}}
    answers = []  # asked from a thread of its own: tritonclient.http's client keeps to the thread it began on
    asking = threading.Thread(target=lambda: answers.append(requests.post(
        f"{served.url}/v2/models/gate/infer", json=body, timeout=60)))
    asking.start()
    wait_until(started.exists)
    gate = model_process(served, "gate")
    assert f"/dev/shm{region.key}" in mapped_keys(gate)
    if gate != served.process.pid:
        assert not mapped_keys(served.process.pid)  # the bytes never pass through the server process
    client.unregister_system_shared_memory(region.name)
    region.destroy()  # the client unmaps and removes its object: the request's own mapping stays
    release.touch()
    asking.join(30)
    assert answers[0].json()["outputs"][0]["data"] == DATA.ravel().tolist()
    wait_until(lambda: not mapped_keys(gate))


def test_nothing_stays_open_or_mapped_after_many_requests(served, regions):
    client = grpcclient.InferenceServerClient(served.grpc_address)
    inputs, outputs = filled(regions, client), regions(DATA.nbytes)
    client.register_system_shared_memory(outputs.name, outputs.key, outputs.size)
    processes = {served.process.pid, model_process(served, "double")}

    def open_files():
        return [len(os.listdir(f"/proc/{pid}/fd")) for pid in processes]

    def infer():
        output = grpcclient.InferRequestedOutput("x")
        output.set_shared_memory(outputs.name, DATA.nbytes)
        client.infer("double", [data_in(grpcclient, inputs)], outputs=[output])

    infer()
    before = open_files()
    for _ in range(200):
        infer()
    assert (outputs.get(np.float32, DATA.shape) == DATA * 2).all()
    # A worker lets go of a request's mappings just after its answer is written: a moment after the client has it.
    # No more files open than before; fewer may be, as a connection of an earlier test's client is closed meanwhile.
    def settled():
        return all(now <= then for now, then in zip(open_files(), before)) and not any(map(mapped_keys, processes))

    try:
        wait_until(settled, timeout=5)
    except AssertionError:
        pytest.fail(f"files open: {open_files()}, before: {before}; mapped: {list(map(mapped_keys, processes))}")
    client.unregister_system_shared_memory(inputs.name)
    client.unregister_system_shared_memory(outputs.name)


def test_an_object_shrunk_after_registering_is_refused_not_read_past_its_end(served, regions):
    client = clients(served)[0]
    region = filled(regions, client)
    os.truncate(f"/dev/shm{region.key}", 8)
    with pytest.raises(InferenceServerException, match="too few for the 48 bytes"):
        client.infer("double", [data_in(httpclient, region)])
    assert client.is_server_live()
    client.unregister_system_shared_memory(region.name)


@pytest.mark.parametrize("front", ["http", "grpc"])
def test_a_region_its_client_removed_is_refused_by_name_and_the_server_serves_on(served, regions, front):
    client = clients(served)[front == "grpc"]
    triton = module_of(client)
    region = filled(regions, client)
    region.destroy()  # unmapped and unlinked by the client, still registered here
    with pytest.raises(InferenceServerException, match="cannot be opened") as refused:
        client.infer("double", [data_in(triton, region)])
    assert refused.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    client.unregister_system_shared_memory(region.name)
    sent = triton.InferInput("x", [2], "FP32")
    sent.set_data_from_numpy(np.array([1, 2], np.float32))
    assert (client.infer("double", [sent]).as_numpy("x") == [2, 4]).all()


def test_output_larger_than_its_region_slice_is_refused(served, regions):
    client = clients(served)[0]
    inputs, outputs = filled(regions, client), regions(16)
    client.register_system_shared_memory(outputs.name, outputs.key, outputs.size)
    output = httpclient.InferRequestedOutput("x")
    output.set_shared_memory(outputs.name, 16)
    with pytest.raises(InferenceServerException, match="cannot hold it"):
        client.infer("double", [data_in(httpclient, inputs)], outputs=[output])
    client.unregister_system_shared_memory()


def test_cuda_shared_memory_is_said_to_be_unsupported(served):
    http_client, grpc_client = clients(served)
    with pytest.raises(InferenceServerException, match="not supported on this server") as refused:
        http_client.get_cuda_shared_memory_status()
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException, match="not supported on this server") as refused:
        grpc_client.get_cuda_shared_memory_status()
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED"


def test_with_the_extension_off_every_call_is_refused_and_it_is_not_listed(regions):
    region = regions(DATA.nbytes)
    with running_server("--replicas", "0", "--enable_shared_memory", "false", *PLUGINS[:2]) as server:
        http_client, grpc_client = clients(server)
        assert "system_shared_memory" not in http_client.get_server_metadata()["extensions"]
        assert "system_shared_memory" not in grpc_client.get_server_metadata().extensions
        for client in (http_client, grpc_client):
            with pytest.raises(InferenceServerException, match="not enabled"):
                client.register_system_shared_memory(region.name, region.key, region.size)
            with pytest.raises(InferenceServerException, match="not enabled"):
                client.get_system_shared_memory_status()
        tensor = {"name": "x", "datatype": "FP32", "shape": [4],
                  "parameters": {"shared_memory_region": region.name, "shared_memory_byte_size": 16}}
        answer = requests.post(f"{server.url}/v2/models/double/infer", json={"inputs": [tensor]}, timeout=10)
        assert answer.status_code == 400 and "not enabled" in answer.json()["error"]


def test_by_default_only_clients_on_this_machine_may_use_it():
    assert is_loopback("127.0.0.1") and is_loopback("ipv4:127.0.0.1:5000") and is_loopback("ipv6:[::1]:5000")
    assert not is_loopback("10.0.0.7") and not is_loopback("ipv4:192.168.1.2:5000") and not is_loopback("")
    Regions(LOOPBACK).allowed("127.0.0.1")
    Regions(True).allowed("10.0.0.7")
    with pytest.raises(InvalidInput, match="only for clients on this machine"):
        Regions(LOOPBACK).allowed("ipv4:10.0.0.7:5000")

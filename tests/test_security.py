"""What a client can reach: only the HTTP port. The worker channel has no address, and client bytes are never unpickled."""

import json
import os
import pickle
import struct

import requests

from support import running_server, wait_for_children


class Exploit:
    """Pickled, it runs a command when unpickled: what a server that unpickles client bytes would run."""

    def __init__(self, proof):
        self.proof = proof

    def __reduce__(self):
        return (os.system, (f"touch {self.proof}",))


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def listening_inet_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    return inodes


def unix_socket_paths() -> dict[str, str]:
    with open("/proc/net/unix") as lines:
        return {fields[6]: fields[7] if len(fields) > 7 else "" for fields in (line.split() for line in list(lines)[1:])}


def test_the_worker_channel_has_no_address_and_only_the_server_listens():
    with running_server("--plugin", "fixture_plugins.behaving:Doubler") as server:
        [worker] = wait_for_children(server.process.pid, 1)
        worker_sockets = socket_inodes(worker)
        assert worker_sockets, "the worker should hold its end of the channel"
        assert not worker_sockets & listening_inet_inodes()  # nothing reachable over TCP
        paths = unix_socket_paths()
        assert all(paths.get(inode, "") == "" for inode in worker_sockets)  # an unnamed socketpair, no file
        ports = {int(server.url.rsplit(":", 1)[1]), int(server.grpc_address.rsplit(":", 1)[1])}
        listening = socket_inodes(server.process.pid) & listening_inet_inodes()
        listening_on = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                listening_on |= {int(fields[1].rsplit(":", 1)[1], 16) for fields in map(str.split, lines)
                                 if fields[9] in listening}
        assert listening_on == ports, "the server listens on its HTTP and gRPC ports and nowhere else"


def test_a_pickle_sent_as_tensor_bytes_stays_bytes(tmp_path, installed_env):
    proof = tmp_path / "unpickled"
    payload = pickle.dumps(Exploit(proof))
    element = struct.pack("<I", len(payload)) + payload  # one BYTES element, length-prefixed, raw
    header = json.dumps({
        "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}],
        "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
    }).encode()
    with running_server("--model", "echo", env=installed_env) as server:  # echo runs in its worker process
        answer = requests.post(server.url + "/v2/models/echo/infer", data=header + element,
                               headers={"Inference-Header-Content-Length": str(len(header))})
        assert answer.status_code == 200
        json_length = int(answer.headers["Inference-Header-Content-Length"])
        assert answer.content[json_length:] == element  # it went to the worker and back as bytes
    assert not proof.exists()

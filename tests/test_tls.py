"""HTTPS and gRPC with TLS from --ssl_certfile and --ssl_keyfile (or KServe's environment variables), with a
certificate made here; one replaced on disk serves the next connection without a restart."""

import datetime
import ipaddress
import ssl
import subprocess
import sys

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import plugin_env, running_server, wait_until

PARAMETERS = ["--plugin", "fixture_plugins.behaving:Parameters"]


def make_pair(folder, name: str) -> tuple:
    """A self-signed certificate for 127.0.0.1 and localhost, named ``name``, and its key: (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "tls.crt", folder / "tls.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key_file


def served_name(url: str) -> str:
    """The common name of the certificate a new connection to ``url`` gets."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    return x509.load_pem_x509_certificate(pem.encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def ready(server, cert) -> None:
    server.wait_for_port(60)
    wait_until(lambda: ready_now(server, cert), timeout=60)


def ready_now(server, cert) -> bool:
    try:
        return requests.get(server.url + "/v2/health/ready", verify=str(cert), timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def grpc_infer(server, cert) -> list:
    with triton.InferenceServerClient(server.grpc_address, ssl=True, root_certificates=str(cert)) as client:
        x = triton.InferInput("x", [2], "FP32")
        x.set_data_from_numpy(np.array([1.5, 2.5], np.float32))
        return client.infer("Parameters", [x]).as_numpy("x").tolist()


def test_https_and_grpc_with_tls_and_a_certificate_replaced_on_disk(tmp_path, mode):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    cert, key = make_pair(first, "first")
    with running_server(*mode, *PARAMETERS, "--ssl_certfile", str(cert), "--ssl_keyfile", str(key),
                        ready=None) as server:
        ready(server, cert)
        assert server.url.startswith("https://") and "serving gRPC with TLS" in server.log
        answer = requests.post(server.url + "/v1/models/Parameters:predict", json={"instances": [1]},
                               verify=str(cert), timeout=30)
        assert answer.json() == {"predictions": [1]}
        with pytest.raises(requests.ConnectionError):  # plain HTTP gets no answer from a TLS port
            requests.get(server.url.replace("https://", "http://") + "/v2/health/live", timeout=5)
        assert grpc_infer(server, cert) == [1.5, 2.5]

        new_cert, new_key = make_pair(second, "second")
        key.write_bytes(new_key.read_bytes())
        cert.write_bytes(new_cert.read_bytes())
        wait_until(lambda: served_name(server.url) == "second")
        server.wait_for_log("read again")
        assert requests.get(server.url + "/v2/health/live", verify=str(new_cert), timeout=10).status_code == 200
        assert grpc_infer(server, new_cert) == [1.5, 2.5]


def test_kserves_environment_variables_name_the_pair(tmp_path):
    cert, key = make_pair(tmp_path, "from-env")
    env = {**plugin_env(), "KSERVE_TLS_CERT_FILE": str(cert), "KSERVE_TLS_KEY_FILE": str(key)}
    with running_server(*PARAMETERS, env=env, ready=None) as server:
        ready(server, cert)
        assert served_name(server.url) == "from-env"


@pytest.mark.parametrize("given, message", [
    (["--ssl_certfile", "tls.crt"], "TLS needs both --ssl_certfile and --ssl_keyfile"),
    (["--ssl_certfile", "missing.crt", "--ssl_keyfile", "missing.key"], "cannot read the TLS certificate or key"),
    (["--ssl_certfile", "other.crt", "--ssl_keyfile", "tls.key"], "cannot use the TLS certificate"),
], ids=["one of the pair", "missing", "not a pair"])
def test_a_pair_that_cannot_serve_is_refused_at_start(tmp_path, given, message):
    make_pair(tmp_path, "mine")
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = make_pair(other, "other")
    (tmp_path / "other.crt").write_bytes(other_cert.read_bytes())
    result = subprocess.run([sys.executable, "-m", "modelhost", "serve", "--http_port", "0", "--grpc_port", "0",
                             *PARAMETERS, *given], capture_output=True, text=True, env=plugin_env(), cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr

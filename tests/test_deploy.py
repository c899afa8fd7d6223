"""The path to deployment: Procfile, requirements.txt, .python-version and the KServe manifests.

Nothing here runs pack, docker or a cluster; these tests check what can be checked
without them (see deploy/README.md).
"""

import argparse
import copy
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import jsonschema
import pytest
import requests
import yaml

from modelhost import kserve_flags
from modelhost.cli import build_parser
from modelhost.plugins import chosen_specs

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ["inferenceservice.yaml", "transformer.yaml"]  # in deploy/
# Each manifest's modelhost containers, by the InferenceService component that runs them.
COMPONENTS = [("inferenceservice.yaml", "predictor"), ("transformer.yaml", "transformer"),
              ("transformer.yaml", "predictor")]
SAMPLE_INPUT = ROOT / "sample_alexnet_plugin" / "input.json"
CRD = ROOT.parent / "shared" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
MODEL = "custom-model"
FIRST_LOAD_SECONDS = 120  # the first start builds the ~230 MB network before it is ready


# --- deploy/*.yaml ------------------------------------------------------------------------------

def read(manifest: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / manifest).read_text())


class Component(NamedTuple):
    """One container of an InferenceService: what runs it, and the args KServe's controller adds."""

    role: str  # predictor or transformer
    spec: dict

    def injected(self) -> list[str]:
        # KServe's transformer_custom.go gives a transformer its model's name, its predictor and its port.
        return ["--model_name", MODEL, "--predictor_host", f"{MODEL}-predictor.default", "--http_port", "8080"] \
            if self.role == "transformer" else []


@pytest.fixture(scope="module", params=MANIFESTS)
def manifest(request) -> dict:
    return read(request.param)


@pytest.fixture(scope="module", params=COMPONENTS, ids=lambda pair: f"{pair[0]}-{pair[1]}")
def component(request) -> Component:
    manifest, role = request.param
    (only,) = read(manifest)["spec"][role]["containers"]
    return Component(role, only)


@pytest.fixture(scope="module")
def container(component) -> dict:
    return component.spec


@pytest.fixture(scope="module")
def isvc_schema() -> dict:
    if not CRD.is_file():
        pytest.fail(f"KServe's InferenceService CRD is not at {CRD}: the manifests cannot be validated (see shared/kserve/README.md)")
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 2 MB: C if there
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return strict(version["schema"]["openAPIV3Schema"])


def strict(schema):
    """The CRD schema, refusing unknown fields as `kubectl apply` does (--validate=strict).

    A structural schema lists its fields but does not forbid others; the API server
    prunes or rejects them, so without this a misspelt key would validate.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def serve_args(component: Component) -> argparse.Namespace:
    """The container's args, and what KServe adds, as `modelhost serve` parses them (SystemExit if it refuses them)."""
    return build_parser().parse_args(["serve", *component.spec["args"], *component.injected()])


def test_manifest_names_the_custom_model(manifest):
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == MODEL


def test_each_container_is_kserves_with_the_image_pack_builds(container):
    assert container["name"] == "kserve-container"
    assert re.fullmatch(r"\$\{DOCKER_USER\}/custom-model:v1", container["image"])


def test_manifest_runs_modelhost_serve_with_kserve_flags(component, container):
    # The CNB launcher in direct mode (`--`), so that args reach modelhost rather than replace the Procfile line.
    assert container["command"] == ["/cnb/lifecycle/launcher", "--", "modelhost", "serve"]
    args = serve_args(component)
    assert args.command == "serve" and args.workers >= 1 and args.http_port is not None
    assert [port["containerPort"] for port in container["ports"]] == [int(args.http_port)]


def in_the_image() -> set[str]:
    """The distributions the buildpack installs: requirements.txt's folders, by their pyproject's names. This
    environment has more plugins installed (the generative sample), which the image does not."""
    folders = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    return {re.search(r'^name = "([^"]+)"', (ROOT / folder / "pyproject.toml").read_text(), re.M)[1]
            for folder in folders}


def test_each_container_serves_one_model_named_as_the_inferenceservice(component):
    args = serve_args(component)
    image = in_the_image()
    specs = [spec for spec in chosen_specs(args.model, args.plugin) if spec.distribution in image or args.plugin]
    [spec] = kserve_flags.renamed(specs, args.model_name)
    assert spec.name == MODEL


def test_the_transformer_calls_its_predictor_over_v2_and_waits_for_it(component):
    predictor = kserve_flags.predictor(serve_args(component))
    if component.role == "predictor":
        assert predictor is None
    else:
        assert predictor is not None and predictor.host == f"{MODEL}-predictor.default"
        assert predictor.protocol == "v2" and predictor.health_check


def test_manifest_probes_hit_the_health_endpoints_on_the_served_port(component, container):
    port = int(serve_args(component).http_port)
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert {probe["port"] for probe in probes.values()} == {port}


def test_manifest_sets_only_variables_the_code_reads(container):
    sources = "".join(
        path.read_text() for folder in ("host", "sample_alexnet_plugin") for path in (ROOT / folder).rglob("*.py")
    )
    unread = [var["name"] for var in container.get("env", []) if f'"{var["name"]}"' not in sources]
    assert not unread, f"no code reads {unread}"


def test_manifest_requests_and_limits_cpu_and_memory(container):
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_manifest_validates_against_the_inferenceservice_crd(manifest, isvc_schema):
    jsonschema.validate(manifest, isvc_schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("spoil", ["misspelt field", "wrong type"])
def test_the_crd_check_would_catch_a_broken_manifest(manifest, isvc_schema, spoil):
    broken = copy.deepcopy(manifest)
    container = broken["spec"]["predictor"]["containers"][0]  # every manifest has a predictor
    if spoil == "misspelt field":
        container["readinesProbe"] = container.pop("readinessProbe")
    else:
        container["ports"][0]["containerPort"] = "eighty-eighty"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, isvc_schema, cls=jsonschema.Draft7Validator)


# --- .python-version ----------------------------------------------------------------------------

def test_python_version_pin_is_one_the_buildpacks_read():
    # heroku/python accepts exactly one X.Y or X.Y.Z line (comments aside); it no longer reads runtime.txt.
    lines = [line.strip() for line in (ROOT / ".python-version").read_text().splitlines()]
    (version,) = [line for line in lines if line and not line.startswith("#")]
    assert re.fullmatch(r"3\.\d+(\.\d+)?", version), f"{version!r} is not X.Y or X.Y.Z"
    pyproject = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', pyproject)
    assert tuple(map(int, version.split(".")[:2])) >= tuple(map(int, minimum.groups()))
    assert not (ROOT / "runtime.txt").exists()


# --- Procfile -----------------------------------------------------------------------------------

def procfile_command(kind: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        if match and match[1] == kind:
            return match[2]
    raise AssertionError(f"the Procfile declares no {kind!r} process")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))  # the Procfile's server listens on every address
        return probe.getsockname()[1]


class Process:
    """A shell command in its own process group, its output kept for failure messages."""

    def __init__(self, command: str, env: dict, cwd: Path):
        self.popen = subprocess.Popen(
            ["sh", "-c", command], cwd=cwd, env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines[-60:])

    def wait_until_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"the web process exited with {self.popen.returncode}:\n{self.log}")
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.25)
        raise AssertionError(f"not ready after {timeout}s:\n{self.log}")

    def stop(self) -> None:
        # The whole group: sh may or may not exec the command, and --workers forks.
        for signum, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        self.popen.wait()


def assert_five_scores(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["predictions"]
    (scores,) = body["predictions"]
    assert len(scores) == 5 and all(isinstance(s, float) and math.isfinite(s) for s in scores), body


def serve_through_procfile(env: dict, cwd: Path) -> None:
    """Run the Procfile's web command through a shell, as buildpacks do, and predict on the sample."""
    port = free_port()
    web = Process(procfile_command("web"), dict(env, PORT=str(port), PYTHONUNBUFFERED="1"), cwd)
    try:
        url = f"http://127.0.0.1:{port}"
        web.wait_until_ready(url, FIRST_LOAD_SECONDS)
        response = requests.post(
            f"{url}/v1/models/{MODEL}:predict", data=SAMPLE_INPUT.read_bytes(),
            headers={"Content-Type": "application/json"}, timeout=60,
        )
        assert_five_scores(response)
    finally:
        web.stop()


def test_procfile_web_process_serves_the_sample_on_port():
    serve_through_procfile(dict(os.environ), cwd=ROOT)


# --- requirements.txt ---------------------------------------------------------------------------

def test_requirements_install_a_serving_host_and_sample_into_a_fresh_venv(tmp_path):
    # A copy of the checkout, as pack copies the app, so the build leaves nothing in the real one.
    app = tmp_path / "app"
    shutil.copytree(ROOT, app, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    python, modelhost = venv / "bin" / "python", venv / "bin" / "modelhost"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], cwd=app, env=env, check=True,
    )

    listed = subprocess.run([modelhost, "list"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    row = re.search(rf"^{MODEL}\s+modelhost[-_.]sample[-_.]alexnet\s.*$", listed.stdout, re.MULTILINE)
    assert row and "error" not in row[0], listed.stdout

    probe = (
        "import importlib.metadata as m, json, modelhost, modelhost_alexnet as sample;"
        "print(json.dumps({'versions': [m.version(d) for d in ('modelhost', 'modelhost-sample-alexnet')],"
        " 'modules': [modelhost.__file__, sample.__file__]}))"
    )
    seen = json.loads(subprocess.run(
        [python, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout)
    assert all(seen["versions"]), seen
    # Installed into the venv, not linked to the copied sources.
    assert all(Path(module).is_relative_to(venv) for module in seen["modules"]), seen

    # As the image runs it: the install's scripts first on PATH, the app directory as cwd.
    serve_through_procfile(dict(env, PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}"), cwd=app)

"""What the comparison needs on the machine: a cache folder, the peers' environments, wrk and h2load, versions."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import modelhost
import onnxruntime


def ray_pin() -> str:
    """Ray Serve at the version modelhost runs here (its ``ray`` extra), so that both sides of ray_compare.py run
    the same Ray; the extra's range where this environment has none. From the metadata: importing Ray is slow."""
    try:
        return f"ray[serve]=={importlib.metadata.version('ray')}"
    except importlib.metadata.PackageNotFoundError:
        extra = [r for r in importlib.metadata.requires("modelhost") or () if r.startswith("ray[serve]")]
        return extra[0].split(";")[0].strip()


# Pinned so that figures compare across runs; bump deliberately. Every environment gets this
# machine's ONNX Runtime, so all servers run the same kernels.
PEERS = {
    "kserve": ["kserve==0.21.0", f"onnxruntime=={onnxruntime.__version__}"],
    # mlserver 1.7.1's inference workers die at start with uvloop 0.22+ ("There is no current
    # event loop", SeldonIO/MLServer#2286); pinning uvloop is the known workaround.
    "mlserver": ["mlserver==1.7.1", "uvloop<0.22", f"onnxruntime=={onnxruntime.__version__}"],
}


def this_machines(name: str) -> str:
    """``name`` pinned at the version installed here, or unpinned where this environment lacks it."""
    return next((f"{name}=={found.version}" for found in importlib.metadata.distributions(name=name)), name)


# Environments that only some scripts use: compare.py installs PEERS alone.
OTHERS = {
    # ray_compare.py: KServe's Ray integration (kserve.ray.RayModel). grpcio-reflection, which ray[serve] needs, and
    # protobuf are held below what needs protobuf 7, which kserve 0.21 cannot take (as modelhost's own extra does).
    "kserve-ray": ["kserve[ray]==0.21.0", ray_pin(), "grpcio-reflection<1.82", "protobuf<7",
                   f"onnxruntime=={onnxruntime.__version__}"],
    # formats_compare.py: MLServer's own runtimes for model files, on this machine's scikit-learn and XGBoost (each
    # unpinned where this environment lacks it), so that both sides run the same library code on the same files.
    # uvloop as for "mlserver" above.
    "mlserver-formats": ["mlserver==1.7.1", "uvloop<0.22", "mlserver-sklearn==1.7.1", "mlserver-xgboost==1.7.1",
                         this_machines("scikit-learn"), this_machines("xgboost")],
    # continuous.py: KServe serving the generative sample's network (bench/peers/continuous_kserve.py), on this
    # machine's NumPy (the same kernels, the same greedy text) and the sample's tokenizer library.
    "kserve-generative": ["kserve==0.21.0", this_machines("numpy"), this_machines("tokenizers")],
}
# What each environment's version line names: the peer first, then what it runs on.
VERSIONS = {peer: [peer, "uvicorn", "fastapi", "onnxruntime"] for peer in PEERS}
VERSIONS["kserve-ray"] = ["kserve", "ray", "uvicorn", "fastapi", "onnxruntime"]
VERSIONS["mlserver-formats"] = ["mlserver", "mlserver-sklearn", "mlserver-xgboost", "scikit-learn", "xgboost",
                                "uvicorn", "fastapi"]
VERSIONS["kserve-generative"] = ["kserve", "uvicorn", "fastapi", "numpy", "tokenizers"]


def prepare_cache(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    # The cache ignores itself, so git ignores it wherever --cache puts it.
    (cache / ".gitignore").write_text("*\n")
    return cache


def venv_python(cache: Path, peer: str) -> Path:
    """The peer's environment under the cache, installed on first use; raises RuntimeError saying why not."""
    venv = cache / "venvs" / peer
    python, marker = venv / "bin" / "python", venv / "installed.txt"
    requirements = {**PEERS, **OTHERS}[peer]
    wanted = "\n".join(requirements)
    if marker.is_file() and marker.read_text() == wanted:
        return python
    print(f"installing {peer} into {venv} (once): {' '.join(requirements)}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", *requirements]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"`{' '.join(step)}` failed: {(done.stderr or done.stdout).strip()[-600:]}")
    marker.write_text(wanted)
    return python


# The load generators, each with the Debian package that holds it and where else to get it.
TOOLS = {"wrk": ("wrk", "https://github.com/wg/wrk"),
         "h2load": ("nghttp2-client", "https://github.com/nghttp2/nghttp2")}


def ensure_tools() -> None:
    """Installs wrk and h2load from Debian when missing and this is root; otherwise exits saying what to do."""
    for tool, (package, source) in TOOLS.items():
        if not shutil.which(tool) and os.geteuid() == 0 and shutil.which("apt-get"):
            print(f"installing {tool}: apt-get install -y {package}", flush=True)
            for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
                subprocess.run(step, capture_output=True)
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed and could not be installed: run `apt-get install {package}` as "
                             f"root (or build it from {source}) and put it on PATH")


def versions(pythons: dict) -> list[str]:
    """One line per component; ``pythons`` maps each installed peer to its environment's interpreter."""
    mine = importlib.metadata.version
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"cores: {os.cpu_count()}, Python {sys.version.split()[0]}, {wrk}, {h2load}",
        f"modelhost {mine('modelhost')} (tornado {mine('tornado')}, onnxruntime {mine('onnxruntime')}, "
        f"orjson {mine('orjson')}), from {Path(modelhost.__file__).parent}",
    ]
    return lines + [peer_line(peer, python, VERSIONS[peer]) for peer, python in pythons.items()]


def peer_line(peer: str, python: Path, names: list[str]) -> str:
    """``peer`` and the versions of ``names`` (its own package first) installed in its environment."""
    query = f"from importlib.metadata import version; print(*(version(n) for n in {names!r}))"
    found = subprocess.run([str(python), "-c", query], capture_output=True, text=True).stdout.split()
    found = found if len(found) == len(names) else ["?"] * len(names)
    return f"{peer} {found[0]} ({', '.join(f'{n} {v}' for n, v in zip(names[1:], found[1:]))})"


def add_run_arguments(parser, runs: int, quick: str) -> None:
    """--quick, --runs and --seconds, as every side-by-side script takes them; ``quick`` says what --quick runs."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--runs", type=int, help=f"interleaved runs per row (default: {runs}; --quick: 1)")
    parser.add_argument("--seconds", type=int, help="whole seconds per wrk run (default: 4; --quick: 2)")


def set_run_lengths(args, runs: int) -> None:
    """Fill in --runs and --seconds from --quick where they were not given."""
    args.runs = args.runs or (1 if args.quick else runs)
    args.seconds = args.seconds or (2 if args.quick else 4)

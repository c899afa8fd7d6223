"""The code examples of README.md and docs/: which fenced blocks run, and running them (tests/test_docs_examples.py).

The convention, for every ```python and ```sh block (the only languages a runnable example may use):

- A block right after ``<!-- not run: REASON -->`` is not run; the reason must be given.
- Every other block runs, in the order of its page, in a folder of the page's own (a temporary one):
  - a Python block that opens with ``# NAME.py`` is that file: it is written there, where later blocks import
    or serve it (and one named ``test_*.py`` is run with pytest); any other Python block is run as a script,
    or with pytest when it defines ``test_`` functions, and must exit 0;
  - a shell block runs command by command: ``pip install ...`` is not run (the suite must not change its own
    environment) but checked: what it names must be installed already; ``modelhost serve`` alone is the server
    the examples share (the sample, as README's first command serves it); ``modelhost serve ARGS`` starts a
    server of the block's own, in the page's folder, and waits until it is ready; any other command runs with
    bash, ``localhost:8080`` made the address of the block's server, each curl made to fail on an HTTP error.
- In Python blocks, ``localhost:8080`` and ``localhost:8081`` are the shared server's HTTP and gRPC addresses.
- A block inside an HTML comment (``<!-- run in the suite, not shown: WHY`` on the line before its fence, ``-->``
  after it) runs as any other but is not shown: the set-up an example assumes (a weights file), or the check that
  shows an example does what its page says.
"""

import os
import re
import shlex
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

from support import ROOT, ServerProcess

LANGUAGES = {"python", "sh"}
SHELL_LIKE = {"bash", "shell", "console", "py", "python3", "zsh"}  # to be written as python or sh
NOT_RUN = re.compile(r"<!-- not run: (.*\S)\s*-->$")
FILE_HEADER = re.compile(r"# (\w+\.py)\b")
LINKED = ["sample_alexnet_plugin", "sample_generative_plugin", "plugins"]  # the repository's folders the commands name, as from a checkout


@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    language: str
    code: str
    marker: str  # the last non-blank line before the fence

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def not_run_reason(self) -> Optional[str]:
        match = NOT_RUN.match(self.marker)
        return match[1] if match else None

    @property
    def file_name(self) -> Optional[str]:
        match = FILE_HEADER.match(self.code) if self.language == "python" else None
        return match[1] if match else None


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path, text: Optional[str] = None) -> list[Block]:
    """Every fenced block of a page, hidden ones included, with the line before each."""
    lines = (path.read_text() if text is None else text).splitlines()
    found, previous, index = [], "", 0
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"```(\S*)", line)
        if fence:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            found.append(Block(path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name,
                               index + 1, fence[1], "\n".join(lines[index + 1:end]) + "\n", previous.strip()))
            index, previous = end + 1, ""
            continue
        if line.strip():
            previous = line
        index += 1
    return found


def installed_from(folder: Path) -> bool:
    """Whether a distribution is installed from ``folder`` (pip's record of where it came from)."""
    url = folder.resolve().as_uri()
    for distribution in metadata.distributions():
        direct = distribution.read_text("direct_url.json") or ""
        if f'"{url}"' in direct:
            return True
    return False


def check_pip_install(command: str) -> str:
    """``pip install ...``, not run: each thing it names must be installed (a folder of the repository, from it)."""
    for argument in shlex.split(command)[2:]:
        if argument.startswith("-"):
            raise AssertionError(f"{command!r}: pip's options are not checked by the examples test")
        if argument.startswith("."):
            assert installed_from(ROOT / argument), f"{command!r}: {argument} is not installed from {ROOT}"
        else:
            name = re.split(r"[\[<>=]", argument)[0]
            metadata.version(name)  # PackageNotFoundError when it is not installed
    return f"not run, already installed: {command}"


class PageRun:
    """One page's examples, run in order in ``folder``, with ``shared`` the server they share."""

    def __init__(self, folder: Path, shared: ServerProcess):
        self.folder = folder
        self.shared = shared.url
        # Its gRPC address stands for the port an example names, as its HTTP one does for 8080.
        self.shared_grpc = shared.grpc_address or "localhost:8081"
        self.env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        for name in LINKED:
            if not (folder / name).exists():
                (folder / name).symlink_to(ROOT / name)
        self.log: list[str] = []

    def run(self, block: Block) -> None:
        if block.language == "python":
            self.python(block)
        else:
            self.shell(block)

    def process(self, args: list[str], what: str) -> str:
        result = subprocess.run(args, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{what} exited with {result.returncode}:\n{output}"
        return output

    def python(self, block: Block) -> None:
        code = block.code.replace("localhost:8080", self.shared.removeprefix("http://"))
        code = code.replace("localhost:8081", self.shared_grpc)
        name = block.file_name or f"block_{block.line}.py"
        if block.file_name is None and re.search(r"^def test_", code, re.M):
            name = f"test_block_{block.line}.py"  # a test the block defines is run, never just defined
        (self.folder / name).write_text(code)
        if name.startswith("test_"):
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", name]
        elif block.file_name:
            args = [sys.executable, "-c", f"import {name[:-3]}"]  # a module: it must import; later blocks use it
        else:
            args = [sys.executable, name]
        self.log.append(self.process(args, f"{block.where} ({' '.join(args[1:])})"))

    def shell(self, block: Block) -> None:
        with ExitStack() as servers:
            url = self.shared
            for command in commands_of(block.code):
                if command.startswith("pip install "):
                    self.log.append(check_pip_install(command))
                elif command == "modelhost serve":
                    url = self.shared
                elif command.startswith("modelhost serve "):
                    url = servers.enter_context(self.server(shlex.split(command)[2:], block))
                else:
                    command = command.replace("localhost:8080", url.removeprefix("http://"))
                    command = re.sub(r"(^|\| )curl ", r"\1curl --silent --show-error --fail-with-body ", command)
                    self.log.append(self.process(["bash", "-euo", "pipefail", "-c", command],
                                                 f"{block.where} ({command})"))

    def server(self, args: list[str], block: Block):
        @contextmanager
        def running():
            server = ServerProcess(args, self.env, cwd=self.folder)
            try:
                server.wait_for_port(60)
                server.wait_until_ready(60)
                yield server.url
            except (AssertionError, OSError) as error:
                # OSError: requests' ConnectionError, when the server exits between two readiness checks
                raise AssertionError(f"{block.where}: modelhost serve {shlex.join(args)}: {error}\n{server.log}") \
                    from None
            finally:
                server.stop()
        return running()


def commands_of(code: str) -> list[str]:
    """A shell block's commands: continued lines joined, ``&&`` chains split, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.extend(part.strip() for part in line.split(" && "))
    return commands

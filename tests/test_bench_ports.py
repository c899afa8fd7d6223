"""Every modelhost server a bench script starts names its gRPC port (a free one): gRPC is on by default, on 8081,
so two servers a script starts side by side, or a server beside anything else on 8081, would fail to start."""

import re

from support import ROOT

# A `python -m modelhost serve` command line, as a bench script writes it: a string, or a list of arguments.
SERVE = re.compile(r"""-m modelhost serve\b|["']-m["'],\s*["']modelhost["'],\s*["']serve["']""")
COMMAND_EXTENT = 400  # characters after "serve" that hold the rest of its flags, in every script


def test_every_server_a_bench_script_starts_names_its_grpc_port():
    unnamed = []
    # Not bench/.cache, where the peers' virtual environments hold thousands of scripts that are not the bench's.
    scripts = [script for script in (ROOT / "bench").rglob("*.py") if ".cache" not in script.parts]
    for script in sorted(scripts):
        source = script.read_text()
        for match in SERVE.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            command = source[match.end():match.end() + COMMAND_EXTENT]
            if "--grpc_port" not in command and "--enable_grpc" not in command:
                unnamed.append(f"{script.relative_to(ROOT)}:{line}")
    assert not unnamed, f"modelhost servers started without --grpc_port: {unnamed}"

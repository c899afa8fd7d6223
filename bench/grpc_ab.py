"""An A/B test of modelhost checkouts over gRPC: echo ModelInfer calls/s and server CPU per call, interleaved.

    python bench/grpc_ab.py [--replicas N] [--rounds R] [--seconds S] [--in-flight K] NAME='HOST_DIR [FLAGS]' ...

Each HOST_DIR is a checkout's ``host/`` folder (this one's: ``host``), put first on the server's PYTHONPATH,
and FLAGS are more ``modelhost serve`` flags for that server (``asyncio='host --event-loop asyncio'``); each
server serves ``plugins/echo`` on free ports, all side by side. Each round loads each server in turn for S seconds
with a grpc.aio client keeping K calls in flight, so that the machine's drift hits them alike. Prints each run,
then per server the median calls/s, the median server CPU per call (its process tree's, the steadier figure: the
client shares the machine), and the ratio of calls/s to the first. ab.py does the same for HTTP, with wrk.
"""

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from modelhost.protocol import grpc_v2
from peers import cpu
from peers.servers import ECHO_PLUGIN, Server, free_port

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
BODY = grpc_v2.encode_infer_request("echo", {"x": np.ones((1, 4), np.float32)}).SerializeToString()


def echo_server(label: str, host: Path, replicas: int, flags: list) -> Server:
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
               "--grpc_port", str(grpc_port), "--replicas", str(replicas), "--log-level", "WARNING",
               "--plugin", "echo=modelhost_echo:Echo", *flags]
    return Server(label, command, {**os.environ, "PYTHONPATH": f"{host.resolve()}:{ECHO_PLUGIN}"}, port, grpc_port)


async def calls_per_second(address: str, seconds: float, in_flight: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(MODEL_INFER)
        for _ in range(50):  # connected and warm
            await call(BODY)
        done = 0
        end = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < end:
                await call(BODY)
                done += 1

        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="+", metavar="NAME='HOST_DIR [FLAGS]'")
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    print("$ python bench/grpc_ab.py " + " ".join(sys.argv[1:]))
    servers = []
    for name, _, spec in (pair.partition("=") for pair in args.servers):
        host, *flags = shlex.split(spec)
        servers.append(echo_server(name, Path(host), args.replicas, flags))
    figures: dict[str, list[tuple[float, float]]] = {server.label: [] for server in servers}
    with tempfile.TemporaryDirectory() as logs:
        try:
            for server in servers:
                server.start(Path(logs) / f"{server.label}.log")
            for server in servers:
                server.wait_ready(60)
            for round_number in range(1, args.rounds + 1):
                for server in servers:
                    before = cpu.tree_seconds(server.process.pid)
                    rate = asyncio.run(calls_per_second(server.grpc_address, args.seconds, args.in_flight))
                    per_call = (cpu.tree_seconds(server.process.pid) - before) / (rate * args.seconds)
                    figures[server.label].append((rate, per_call))
                    print(f"round {round_number} {server.label:12} {rate:8,.0f} calls/s  "
                          f"{per_call * 1e6:6.1f} us CPU/call")
        finally:
            for server in servers:
                server.stop()
    print(f"\nmedians over {args.rounds} rounds, --replicas {args.replicas}, {args.in_flight} calls in flight:")
    first = statistics.median(rate for rate, _ in figures[servers[0].label])
    for label, runs in figures.items():
        rate = statistics.median(rate for rate, _ in runs)
        per_call = statistics.median(per_call for _, per_call in runs)
        print(f"  {label:12} {rate:8,.0f} calls/s  {per_call * 1e6:6.1f} us CPU/call  {rate / first:.3f}x")


if __name__ == "__main__":
    main()

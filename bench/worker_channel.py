"""The channel between the server and a worker: large tensors through its socket, or spilled to shared memory.

    python bench/worker_channel.py          # from the repository root, with modelhost installed

A message holding one FP32 array of 64 KiB to 64 MiB goes from an asyncio end (the server's) to a forked
process's blocking end (a worker's) and back, as a batch and its outcome do; the median round trip of each, in
rounds that alternate the two ways: every buffer through the socket, and every buffer spilled
(``runtime/spill.py``). What ``spill.SPILL_ABOVE`` is chosen from.
"""

import asyncio
import os
import socket
import statistics
import sys
import time

import numpy as np

from modelhost.runtime import channel as channels
from modelhost.runtime.spill import Spill

SIZES_MB = (0.0625, 0.25, 1, 4, 8, 16, 32, 64)
ROUNDS = 4


def echo(sock: socket.socket, spilled: bool) -> None:
    end = channels.BlockingChannel(sock, Spill(os.getppid(), os.getpid()) if spilled else None)
    try:
        while True:
            end.send(end.receive())
    except EOFError:
        os._exit(0)


async def round_trips(spilled: bool) -> dict:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        echo(theirs, spilled)
    theirs.close()
    end = await channels.AsyncChannel.open(ours, Spill(os.getpid(), pid) if spilled else None)
    medians = {}
    for size_mb in SIZES_MB:
        data = np.ones(int(size_mb * (1 << 20)) // 4, np.float32)
        times = []
        for _ in range(10 if size_mb >= 16 else 40):
            began = time.perf_counter()
            await end.send({"x": data})
            assert (await end.receive())["x"].shape == data.shape
            times.append(time.perf_counter() - began)
        medians[size_mb] = statistics.median(times) * 1e3
    end.close()
    await asyncio.sleep(0.2)  # the socket closes on the loop's next turns: then the echo sees EOF and exits
    os.waitpid(pid, 0)
    return medians


def main() -> int:
    channels.SPILL_ABOVE = 0  # every buffer spilled where the ends have a Spill: each size measured both ways
    results: dict = {False: [], True: []}
    for _ in range(ROUNDS):
        for spilled in (False, True):
            results[spilled].append(asyncio.run(round_trips(spilled)))
    print(f"python bench/worker_channel.py   (cores: {os.cpu_count()}, {ROUNDS} rounds, median round trip in ms, "
          "each round's median; then the median of the rounds)")
    print(f"{'size':>10}{'socket':>28}{'spilled':>28}{'socket / spilled':>18}")
    for size_mb in SIZES_MB:
        socket_ms = [run[size_mb] for run in results[False]]
        spilled_ms = [run[size_mb] for run in results[True]]
        print(f"{size_mb * 1024:8.0f} KiB{' '.join(f'{ms:8.2f}' for ms in socket_ms):>28}"
              f"{' '.join(f'{ms:8.2f}' for ms in spilled_ms):>28}"
              f"{statistics.median(socket_ms) / statistics.median(spilled_ms):17.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

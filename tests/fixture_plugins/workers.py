"""Plugins for the worker-process tests: meeting in parallel, dying, hanging, chattering."""

import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

from modelhost import hookimpl


class Rendezvous:
    """Answers only once ``expect`` requests are inside predict at the same time, so it proves parallelism.

    Each request names a directory and how many must meet there; bounded at 30 s.
    """

    @hookimpl
    def postprocess(self, outputs, request):
        meeting = Path(request.parameters["dir"])
        (meeting / f"{os.getpid()}-{time.monotonic_ns()}").touch()
        deadline = time.monotonic() + 30
        while len(list(meeting.iterdir())) < request.parameters["expect"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the others never came")
            time.sleep(0.01)
        return np.array([os.getpid()])

    @hookimpl
    def predict(self, inputs):
        return inputs


class Fragile:
    """Dies as each instance says: 'kill' (SIGKILL), 'segfault', 'exit'; sleeps 'nap' seconds; else echoes pid.
    A V2 request's first input says it, as text or BYTES."""

    @hookimpl
    def predict(self, inputs):
        if isinstance(inputs, dict):
            inputs = next(iter(inputs.values()))
        for instance in inputs.tolist():
            instance = instance.decode() if isinstance(instance, bytes) else instance
            if instance == "segfault":
                ctypes.string_at(0)
            elif instance == "exit":
                os._exit(7)
            elif instance == "kill":
                os.kill(os.getpid(), 9)
            elif isinstance(instance, (int, float)):
                time.sleep(instance)
        return np.full(len(inputs), os.getpid())


class ReadsServeSwitches:
    """Answers the values its process has of the Ray Serve switches named in each instance ('' where unset)."""

    @hookimpl
    def predict(self, inputs):
        return np.array([os.environ.get(name, "") for name in inputs.tolist()])


class Hangs:
    """Hangs (for 60 s at most) on 'hang'; answers its pid otherwise."""

    @hookimpl
    def predict(self, inputs):
        if "hang" in inputs.tolist():
            time.sleep(60)
        return np.full(len(inputs), os.getpid())


class Noisy:
    """Writes to stdout and stderr on every request, without newlines and with bytes that are not text."""

    @hookimpl
    def predict(self, inputs):
        print("noise on stdout", flush=True)
        sys.stdout.buffer.write(b"\x00\xff{not a frame")
        sys.stdout.flush()
        print("noise on stderr", file=sys.stderr, flush=True)
        return inputs


class CrashesAtStart:
    @hookimpl
    def load(self):
        os._exit(1)

    @hookimpl
    def predict(self, inputs):
        return inputs


class WantsTwo:
    """Asks for two replicas in its settings."""

    @hookimpl
    def settings(self):
        return {"replicas": 2}

    @hookimpl
    def predict(self, inputs):
        return np.full(len(inputs), os.getpid())


class Flaky:
    """Raises on every instance divisible by 3, as a plugin with a bug in one branch would."""

    @hookimpl
    def predict(self, inputs):
        if any(value % 3 == 0 for value in inputs.tolist()):
            raise ValueError("a bug that every third request finds")
        return inputs


class AsksForRay(WantsTwo):
    """Asks in its settings to be served on Ray Serve, by two replicas of a tenth of a CPU each."""

    @hookimpl
    def settings(self):
        return {"runner": "ray", "replicas": 2, "ray_actor_options": {"num_cpus": 0.1}}

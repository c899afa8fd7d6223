"""Plugins that show when they load and unload: each writes a line to the file $MODELHOST_TEST_LIFECYCLE."""

import os
import time

from modelhost import hookimpl


def record(event: str, name: str) -> None:
    with open(os.environ["MODELHOST_TEST_LIFECYCLE"], "a") as lines:
        lines.write(f"{event} {name} {os.getpid()}\n")


class Unloads:
    @hookimpl
    def load(self, name):
        record("load", name)

    @hookimpl
    def unload(self, name):
        record("unload", name)

    @hookimpl
    def predict(self, inputs):
        return inputs


class UnloadRaises(Unloads):
    @hookimpl
    def unload(self, name):
        record("unload", name)
        raise RuntimeError("the session would not close")


class UnloadHangs(Unloads):
    @hookimpl
    def unload(self, name):
        record("unload", name)
        time.sleep(60)

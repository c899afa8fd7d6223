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


class SecondLoadWaits:
    """The first process to load this is ready at once; any other waits for the file $MODELHOST_TEST_RELEASE."""

    @hookimpl
    def load(self):
        release = os.environ["MODELHOST_TEST_RELEASE"]
        try:
            os.close(os.open(release + ".first", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            while not os.path.exists(release):
                time.sleep(0.01)

    @hookimpl
    def predict(self, inputs):
        return inputs

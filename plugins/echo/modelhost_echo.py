"""The echo model: every request is answered with its own inputs."""

from modelhost import hookimpl


class Echo:
    @hookimpl
    def predict(self, inputs):
        return inputs

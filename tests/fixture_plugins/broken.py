"""Plugins that break the contract or fail, each in its own way."""

from modelhost import hookimpl


class FailsToLoad:
    @hookimpl
    def load(self):
        raise FileNotFoundError("weights.bin is missing")

    @hookimpl
    def predict(self, inputs):
        return inputs


class Misspelled:
    @hookimpl
    def predcit(self, inputs):
        return inputs


class Unmarked:
    @hookimpl
    def predict(self, inputs):
        return inputs

    def preprocess(self, request):
        return request.instances


class NoPredict:
    @hookimpl
    def preprocess(self, request):
        return request.instances


class WrongArguments:
    @hookimpl
    def predict(self, inputs, batch_size):
        return inputs

"""Plugins with the mistakes their authors make: a forgotten return, a class that needs arguments."""

import logging

from modelhost import hookimpl


class ForgetsInPreprocess:
    """Its preprocess computes the inputs and forgets to return them. It logs each request it sees, so that a test
    knows when a later request has been through it."""

    @hookimpl
    def preprocess(self, request):
        logging.getLogger("modelhost").warning("ForgetsInPreprocess saw %s", request.instances)
        [[value + 1 for value in instance] for instance in request.instances]

    @hookimpl
    def predict(self, inputs):
        return inputs


class ForgetsInPostprocess:
    @hookimpl
    def predict(self, inputs):
        return inputs

    @hookimpl
    def postprocess(self, outputs, request):
        {"scores": outputs}


class NeedsArguments:
    """The host instantiates a plugin class with no arguments."""

    def __init__(self, weights):
        self.weights = weights

    @hookimpl
    def predict(self, inputs):
        return inputs

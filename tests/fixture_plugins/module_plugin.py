"""A plugin written as a module of functions rather than a class."""

from modelhost import hookimpl


@hookimpl
def predict(inputs):
    return -inputs

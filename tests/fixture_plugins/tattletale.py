"""A plugin module that records which processes import it, in the file $TATTLETALE_FILE."""

import os

import numpy as np

from modelhost import hookimpl

with open(os.environ["TATTLETALE_FILE"], "a") as record:
    record.write(f"{os.getpid()}\n")


@hookimpl
def predict(inputs):
    return np.full(len(inputs), os.getpid())

"""A plugin whose loaded model takes memory, so that freeing it shows."""

import numpy as np

from modelhost import hookimpl

BALLAST_BYTES = 128 * 2**20


class Heavy:
    @hookimpl
    def load(self):
        self.ballast = np.ones(BALLAST_BYTES // 8)  # written, so resident, not merely reserved

    @hookimpl
    def predict(self, inputs):
        return inputs

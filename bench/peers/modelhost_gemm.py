"""The 16->4 Gemm as a modelhost plugin, served with ``--plugin gemm=modelhost_gemm:Gemm``."""

import sessions
from modelhost import hookimpl


class Gemm:
    @hookimpl
    def load(self):
        self.session = sessions.gemm_session()

    @hookimpl
    def predict(self, inputs):
        # The default preprocess hands V2 inputs over as {name: array}; the graph has one, "x".
        return {"y": sessions.run(self.session, inputs["x"])}

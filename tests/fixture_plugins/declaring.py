"""Plugins that declare their tensors in their metadata and leave requests to the host."""

from modelhost import hookimpl

DECLARED = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]},
               {"name": "mask", "datatype": "BOOL", "shape": [-1], "optional": True}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}


class Declares:
    """No preprocess: predict gets the request's tensors as sent, and trusts them to be what the model declares."""

    @hookimpl
    def metadata(self):
        return DECLARED

    @hookimpl
    def predict(self, inputs):
        return {"y": inputs["x"] * 2}


class DeclaresBatched(Declares):
    @hookimpl
    def settings(self):
        return {"max_batch_size": 4}


class Misdeclares:
    """Declares an FP32 output and answers with the request's FP64 tensor."""

    @hookimpl
    def metadata(self):
        return {"outputs": DECLARED["outputs"]}

    @hookimpl
    def predict(self, inputs):
        return {"y": inputs["x"].astype("float64")}

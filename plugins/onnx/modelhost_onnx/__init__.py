"""modelhost's ONNX format: an ONNX graph served on ONNX Runtime with no code.

Only this declaration is imported by the server; the plugin, and ONNX
Runtime with it, is imported where the model runs.
"""

from modelhost import ModelFormat

# An ONNX file is a graph of standard operators, no code: a folder's files may pick this format.
FORMAT = ModelFormat(name="onnx", plugin="modelhost_onnx.plugin:ONNXModel", files=("*.onnx",))

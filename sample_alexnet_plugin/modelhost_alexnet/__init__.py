"""modelhost's sample AlexNet plugin: KServe's "Deploy Custom Python Model" guide on ONNX Runtime."""

from .plugin import AlexNet, Network, Transformer

__all__ = ["AlexNet", "Network", "Transformer"]

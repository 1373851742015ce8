"""Deployment: ONNX export checked with onnxruntime (``tools/deployment``)."""

"""collat_export: the two stroke-MRI networks in PyTorch and the tools that take them to serving.

Networks live in :mod:`collat_export.networks`; ONNX export and parity in
:mod:`collat_export.onnx_export`; TensorRT engines in :mod:`collat_export.tensorrt_build`;
Triton model directories in :mod:`collat_export.repository`.
"""

__version__ = "0.1.0"

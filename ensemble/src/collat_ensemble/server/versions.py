"""Pinned versions of the serving stack, in one place.

TensorRT engines only load under the TensorRT version that built them, so the version
the export code builds with and the NGC Triton image the deployment runs must agree.
Triton 2.51.0 (what the ``nvidia-pytriton`` wheel ships for CPU development) is NGC
release 24.10, which carries TensorRT 10.5.
"""

TRITON_SERVER_VERSION = "2.51.0"
NGC_TRITON_TAG = "24.10-py3"
NGC_TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{NGC_TRITON_TAG}"
TENSORRT_VERSION = "10.5.0"
ONNX_OPSET = 17

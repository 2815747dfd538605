"""Everything that builds, starts or deploys the Triton server side, without torch.

``repository`` and ``pipelines`` render the model repository (networks, Python steps,
ensembles) from the shared contract; ``launcher`` runs the pip-installed tritonserver;
``entrypoint`` is the NGC image's start-up (TensorRT engines built and cached, then
tritonserver); ``tensorrt_build`` and ``fp16`` turn ONNX files into engines;
``network_model`` is the Python-backend model that serves an ONNX network on CPU-only
machines; ``demo`` and ``cli`` are what people run. The networks themselves (PyTorch) and
their ONNX export live in ``collat_export``, which needs torch; nothing here does, and a
layout test imports every module here with torch blocked.
"""

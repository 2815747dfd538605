"""collat_export: the two stroke-MRI networks in PyTorch and the tools that take them to serving.

Networks live in :mod:`collat_export.networks`, training in :mod:`collat_export.training`,
checkpoints in :mod:`collat_export.checkpoint`, ONNX export and parity in
:mod:`collat_export.onnx_export`. What builds and runs the server side (repository
rendering, TensorRT engines, the launcher) needs no torch and lives in
``collat_ensemble.server``; the ``collat-export`` CLI calls it after exporting.
"""

__version__ = "0.1.0"

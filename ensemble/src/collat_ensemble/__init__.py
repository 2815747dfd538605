"""collat_ensemble: the server side of the serving stack, without torch.

Pure functions (numpy in, numpy out) for preprocessing, the hypoperfusion rule, the clinical
criteria, the conventional collateral map and the digital phantom; thin Triton adapters
around them in :mod:`collat_ensemble.serving` (what the Python backend runs); and
:mod:`collat_ensemble.server`, which renders the model repository, starts tritonserver and
builds TensorRT engines. It shares its vocabulary with the client through ``collat_contract``
and imports neither the client nor PyTorch.
"""

__version__ = "0.1.0"

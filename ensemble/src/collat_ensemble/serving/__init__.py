"""What the Triton Python-backend models do, as plain functions (numpy in, numpy and dicts out).

``perfusion`` and ``diffusion`` hold each pipeline's pre- and post-processing steps,
``context`` the JSON that carries geometry and timings from a pre- to its post-processing
step through the ensemble, ``metrics`` the METRICS document, and ``triton_models`` the
thin adapters that tritonserver loads (the only module that touches Triton's API).
"""

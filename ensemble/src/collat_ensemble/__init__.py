"""collat_ensemble: the numpy/scipy science that runs inside Triton's Python backend.

Pure functions (numpy in, numpy out) for preprocessing, the conventional collateral map,
the digital phantom and the clinical metrics; Triton adapters stay thin around them.
"""

__version__ = "0.1.0"

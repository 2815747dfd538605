"""Triton Python-backend entry point of postprocess_collateral (code: collat_ensemble.serving)."""

from collat_ensemble.serving.triton_models import PostprocessCollateral as TritonPythonModel  # noqa: F401

"""Triton Python-backend entry point of postprocess_hypoperfusion (code: collat_ensemble.serving)."""

from collat_ensemble.serving.triton_models import PostprocessHypoperfusion as TritonPythonModel  # noqa: F401

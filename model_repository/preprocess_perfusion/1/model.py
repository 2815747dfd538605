"""Triton Python-backend entry point of preprocess_perfusion (code: collat_ensemble.serving)."""

from collat_ensemble.serving.triton_models import PreprocessPerfusion as TritonPythonModel  # noqa: F401

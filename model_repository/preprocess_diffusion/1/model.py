"""Triton Python-backend entry point of preprocess_diffusion (code: collat_ensemble.serving)."""

from collat_ensemble.serving.triton_models import PreprocessDiffusion as TritonPythonModel  # noqa: F401

"""Triton Python-backend entry point of merge_metrics (code: collat_ensemble.serving)."""

from collat_ensemble.serving.triton_models import MergeMetrics as TritonPythonModel  # noqa: F401

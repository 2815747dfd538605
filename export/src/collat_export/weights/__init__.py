"""Phantom-trained demo weights of the ``tiny`` presets, shipped with the package.

Trained on synthetic digital-phantom cases for pipeline validation; NOT for clinical use.
Each folder holds ``checkpoint.pt`` (self-describing, FP16 tensors) and its model card.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_FOLDERS = {"mrod": "mrod_tiny", "hypo": "hypo_tiny"}


def demo_checkpoint(model: str) -> Path:
    """Path of the shipped demo checkpoint of ``model`` ("mrod" or "hypo")."""
    try:
        folder = DEMO_FOLDERS[model]
    except KeyError:
        raise ValueError(f"no demo weights for {model!r}; choose one of {', '.join(DEMO_FOLDERS)}") from None
    return Path(str(resources.files("collat_export.weights").joinpath(folder, "checkpoint.pt")))

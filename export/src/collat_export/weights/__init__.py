"""Phantom-trained demo weights shipped with the package, one folder per network and preset.

Trained on synthetic digital-phantom cases for pipeline validation; NOT for clinical use.
Each folder (``<model>_<preset>``) holds ``checkpoint.pt`` (self-describing, FP16 tensors) and its model card.
``mrod_fine`` is the served 3D-MROD-Net: its maps come out on the input's own grid (128x128x20 for the phantom's
DCE-MRA), which the issue-19 scores are measured on. ``mrod_tiny`` is its frozen coarse path and stays selectable
(``demo_checkpoint("mrod", "tiny")``, ``make serve MROD_CHECKPOINT=...``): ten times faster (the fine one makes two
passes), for load tests and quick checks, with maps on a 64x64x12 grid brought back to the input's.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_PRESETS = {"mrod": "fine", "hypo": "tiny"}  # what `make demo` and the tests serve


def demo_checkpoint(model: str, preset: str | None = None) -> Path:
    """Path of the shipped checkpoint of ``model`` ("mrod" or "hypo"): the served one, or ``preset``'s."""
    if model not in DEMO_PRESETS:
        raise ValueError(f"no demo weights for {model!r}; choose one of {', '.join(DEMO_PRESETS)}")
    path = Path(str(resources.files("collat_export.weights").joinpath(f"{model}_{preset or DEMO_PRESETS[model]}",
                                                                        "checkpoint.pt")))
    if not path.is_file():
        raise ValueError(f"no shipped {model} weights of the {preset!r} preset")
    return path

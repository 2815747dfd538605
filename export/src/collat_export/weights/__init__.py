"""Phantom-trained demo weights shipped with the package, one folder per network and preset.

Trained on synthetic digital-phantom cases for pipeline validation; NOT for clinical use.
Each folder (``<model>_<preset>``) holds ``checkpoint.pt`` (self-describing, FP16 tensors) and its model card.
``mrod_fine`` (maps on the input's own grid) is served with ``make serve MROD_CHECKPOINT=...``; its coarse path is
``mrod_tiny``, still the default: with the fine network the 200-request soak test ran 6 min and the server's memory
grew 26 % (the test allows 20 %), which has to be understood before it serves by default.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_PRESETS = {"mrod": "tiny", "hypo": "tiny"}  # what `make demo` and the tests serve


def demo_checkpoint(model: str, preset: str | None = None) -> Path:
    """Path of the shipped checkpoint of ``model`` ("mrod" or "hypo"): the served one, or ``preset``'s."""
    if model not in DEMO_PRESETS:
        raise ValueError(f"no demo weights for {model!r}; choose one of {', '.join(DEMO_PRESETS)}")
    path = Path(str(resources.files("collat_export.weights").joinpath(f"{model}_{preset or DEMO_PRESETS[model]}",
                                                                        "checkpoint.pt")))
    if not path.is_file():
        raise ValueError(f"no shipped {model} weights of the {preset!r} preset")
    return path

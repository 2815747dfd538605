"""The MNI target that native DWIs are registered to: a b=1000 DWI contrast on the MNI 2 mm grid.

Built from the ICBM152 2009 grey/white-matter probability maps that ship in the nilearn
wheel (the phantom reads the same files), with the tissue signals of a b=1000 DWI (grey
matter brightest, white matter a little darker, CSF dark), so that mutual information sees the
same contrast it will meet in a scan. It covers the whole MNI 2 mm box (91x109x91, z -72..108:
cerebellum and vertex included), wider than the U-Net's 60-slice grid, because registration
is steadier with the whole head to hold on to.

The MNI images are not committed to this repository: ``collat-export repository`` builds the
template into the ``preprocess_diffusion`` model folder (it has the phantom extra), and the
server reads it from there, so the serving image needs neither nilearn nor a download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputValidationError

TEMPLATE_AFFINE = np.array([[2.0, 0, 0, -90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1.0]])
TEMPLATE_SHAPE = (91, 109, 91)
TEMPLATE_FILE = "mni_dwi_template.npz"
# b=1000 signal of each tissue, b0 * exp(-b * ADC) with the phantom's b0 and ADC (SPEC section 6).
B1000_SIGNAL = {"gm": 449.0, "wm": 397.0, "csf": 100.0}


@dataclass(frozen=True)
class Template:
    dwi: np.ndarray  # (x, y, z) float32, b=1000 contrast
    brain: np.ndarray  # (x, y, z) bool: grey + white matter > 0.3
    affine: np.ndarray = field(default_factory=lambda: TEMPLATE_AFFINE.copy())
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: str, make: Callable[[], Any]) -> Any:
        """What registration and masking compute from the template alone (4 mm copies, a dilated brain): made
        once per template, since every request of a server process uses the same one."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    @property
    def brain_ml(self) -> float:
        return float(self.brain.sum()) * abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def build_template() -> Template:
    """From the nilearn wheel's ICBM152 2009 maps (needs ``collat-ensemble[phantom]``)."""
    from .phantom.anatomy import anatomy_on_grid

    anat = anatomy_on_grid(TEMPLATE_AFFINE, TEMPLATE_SHAPE)
    dwi = B1000_SIGNAL["gm"] * anat.gm + B1000_SIGNAL["wm"] * anat.wm + B1000_SIGNAL["csf"] * anat.csf
    return Template(dwi.astype(np.float32), (anat.gm + anat.wm) > 0.3)


def save_template(template: Template, path: Path) -> Path:
    """Write atomically (a half-written template must never be loaded)."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as out:
        np.savez_compressed(out, dwi=template.dwi.astype(np.float16), brain=np.packbits(template.brain),
                            affine=template.affine)
    partial.replace(path)
    return path


def load_template(path: Path) -> Template:
    try:
        with np.load(path) as data:
            dwi = data["dwi"].astype(np.float32)
            brain = np.unpackbits(data["brain"])[: dwi.size].reshape(dwi.shape).astype(bool)
            affine = data["affine"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputValidationError(f"{path}: not a registration template ({exc})") from None
    if dwi.shape != TEMPLATE_SHAPE or not np.allclose(affine, TEMPLATE_AFFINE):
        raise InputValidationError(f"{path}: template grid {dwi.shape} is not the MNI 2 mm grid {TEMPLATE_SHAPE}")
    return Template(dwi, brain, affine)


@lru_cache(maxsize=1)
def default_template() -> Template:
    """The template for in-process callers (training, evaluation, tests): built once from the nilearn wheel and
    rounded exactly as a saved one is, so they see what the server sees."""
    built = build_template()
    return Template(built.dwi.astype(np.float16).astype(np.float32), built.brain)

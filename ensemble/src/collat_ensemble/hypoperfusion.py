"""From the U-Net's probability and the ADC core to the lesion, its volumes and the trial decisions.

One function for everyone who turns a probability map into numbers: the serving step
(``serving.diffusion``), the held-out evaluation (``collat-train evaluate``) and, through the
served ``LESION_MASK``, every client-side summary. The lesion is the voxels of the brain whose
probability reaches :data:`~.clinical.LESION_PROBABILITY_THRESHOLD`, united with the ADC core:
the core is hypoperfused by definition, whatever the network says about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .clinical import (
    LESION_PROBABILITY_THRESHOLD,
    DawnResult,
    Decision,
    Mismatch,
    dawn_eligibility,
    defuse3_target_mismatch,
    mismatch,
    volume_ml,
)
from .preprocess import NativeGrid, mni_to_input_grid


def lesion_mask(probability: np.ndarray, core: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The hypoperfusion lesion: probability >= threshold inside the brain, united with the ADC core."""
    return ((np.asarray(probability) >= LESION_PROBABILITY_THRESHOLD) & np.asarray(brain, dtype=bool)) \
        | np.asarray(core, dtype=bool)


@dataclass(frozen=True)
class HypoperfusionAssessment:
    lesion: np.ndarray  # bool, on the grid of the inputs
    core_ml: float
    hypoperfusion_ml: float
    mismatch: Mismatch
    defuse3: Decision
    dawn: DawnResult | None  # None without an age: DAWN's groups depend on it

    def as_metrics(self) -> dict[str, Any]:
        """The volumes and decisions as the METRICS document reports them (rounded for reading, not for deciding:
        the decisions above were taken on the unrounded values)."""
        return {
            "core_ml": round(self.core_ml, 2),
            "hypoperfusion_ml": round(self.hypoperfusion_ml, 2),
            "mismatch_ml": round(self.mismatch.volume_ml, 2),
            "mismatch_ratio": round(self.mismatch.ratio, 3),
            "mismatch_ratio_capped": self.mismatch.ratio_capped,
            "defuse3": self.defuse3.as_dict(),
            "dawn": None if self.dawn is None else self.dawn.as_dict(),
        }


def assess_hypoperfusion(probability: np.ndarray, core: np.ndarray, brain: np.ndarray, affine: np.ndarray, *,
                         nihss: float, age: float | None) -> HypoperfusionAssessment:
    """Lesion, core and lesion volumes (from ``affine``'s voxel size), mismatch, DEFUSE 3 and DAWN."""
    lesion = lesion_mask(probability, core, brain)
    core_ml = volume_ml(core, affine)
    hypo_ml = volume_ml(lesion, affine)
    mm = mismatch(hypo_ml, core_ml)
    dawn = None if age is None else dawn_eligibility(age, nihss, core_ml)
    return HypoperfusionAssessment(lesion, core_ml, hypo_ml, mm, defuse3_target_mismatch(core_ml, mm), dawn)


def assess_on_scan(probability_mni: np.ndarray, core: np.ndarray, brain: np.ndarray, grid: NativeGrid, *,
                   nihss: float, age: float | None) -> tuple[np.ndarray, HypoperfusionAssessment]:
    """The U-Net's probability (MNI 2 mm grid) brought onto the scan's RAS grid through the registration, and
    everything counted there, on the scan's own voxels (``core`` and ``brain`` are on that grid)."""
    probability = mni_to_input_grid(probability_mni, grid) * np.asarray(brain, dtype=np.float32)
    return probability, assess_hypoperfusion(probability, core, brain, grid.ras_affine, nihss=nihss, age=age)

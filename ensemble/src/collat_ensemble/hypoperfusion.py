"""From the U-Net's probability and the ADC core to the lesion, its volumes and the trial decisions.

One function for everyone who turns a probability map into numbers: the serving step
(``serving.diffusion``), the held-out evaluation (``collat-train evaluate``) and, through the
served ``LESION_MASK``, every client-side summary. The lesion is the voxels of the brain whose
probability reaches :data:`~.clinical.LESION_PROBABILITY_THRESHOLD`, united with the ADC core:
the core is hypoperfused by definition, whatever the network says about it.

A U-Net's weights may come with a volume calibration (:class:`VolumeCalibration`, in their model
card), for a network that shrinks every lesion towards the typical one (small lesions grow,
mid-sized ones shrink), which flips DEFUSE 3 decisions near its mismatch limits. The calibration
maps the network's own volume, the core and the NIHSS to the volume the lesion has on the
training phantoms, and the lesion then takes that many voxels in the network's order of
probability (its ranking is what it does well), never fewer than the core, never a voxel below
:data:`MIN_CANDIDATE_PROBABILITY`. Without one the lesion is SPEC's probability threshold. The
demo weights carry none (docs/training.md says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from collat_contract.metrics import HypoperfusionVolumes, LesionCalibration, LesionRule

from . import quality
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
from .preprocess import NativeGrid, hemisphere, mni_to_input_grid


def lesion_mask(probability: np.ndarray, core: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The hypoperfusion lesion: probability >= threshold inside the brain, united with the ADC core."""
    return ((np.asarray(probability) >= LESION_PROBABILITY_THRESHOLD) & np.asarray(brain, dtype=bool)) \
        | np.asarray(core, dtype=bool)


# A calibrated lesion never takes a voxel the network gives less than this: the calibration corrects the extent of
# what the network found, it does not paint a lesion where the network saw none.
MIN_CANDIDATE_PROBABILITY = 0.05


@dataclass(frozen=True)
class VolumeCalibration:
    """``log(1 + V) = intercept + network log(1 + V_net) + core log(1 + V_core) + nihss NIHSS`` (volumes in mL):
    the expected lesion volume V from the network's threshold-0.5 volume, the ADC core and the NIHSS, fitted by
    least squares on training phantoms (``collat-train fit-volume``) for one set of weights."""

    intercept: float
    network: float
    core: float
    nihss: float
    fitted_on: str

    @classmethod
    def from_dict(cls, doc: Any) -> VolumeCalibration:
        try:
            c = doc["coefficients"]
            values = [float(c[k]) for k in ("intercept", "network", "core", "nihss")]
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not a lesion volume calibration ({exc})") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a lesion volume calibration needs finite coefficients")
        return cls(*values, str(doc.get("fitted_on", "")))

    def as_dict(self) -> LesionCalibration:
        return LesionCalibration(
            form="log(1 + V) = intercept + network log(1 + V_net) + core log(1 + V_core) + nihss NIHSS",
            coefficients={"intercept": self.intercept, "network": self.network, "core": self.core,
                          "nihss": self.nihss}, fitted_on=self.fitted_on)

    def expected_ml(self, network_ml: float, core_ml: float, nihss: float) -> float:
        z = self.intercept + self.network * math.log1p(network_ml) + self.core * math.log1p(core_ml) + \
            self.nihss * nihss
        return max(0.0, math.expm1(min(z, 20.0)))


def calibrated_lesion(probability: np.ndarray, core: np.ndarray, brain: np.ndarray, voxel_ml: float,
                      target_ml: float) -> tuple[np.ndarray, float]:
    """The core and the most probable brain voxels beyond it until the lesion holds ``target_ml`` (or every voxel
    of at least :data:`MIN_CANDIDATE_PROBABILITY`), and the probability where it stopped."""
    probability, core = np.asarray(probability), np.asarray(core, dtype=bool)
    candidates = np.asarray(brain, dtype=bool) & ~core & (probability >= MIN_CANDIDATE_PROBABILITY)
    values = probability[candidates]
    wanted = int(round((target_ml - float(core.sum()) * voxel_ml) / voxel_ml))
    wanted = min(max(wanted, 0), values.size)
    if wanted == 0:
        return core.copy(), 1.0
    threshold = float(np.partition(values, values.size - wanted)[values.size - wanted])
    return core | (candidates & (probability >= threshold)), threshold


@dataclass(frozen=True)
class HypoperfusionAssessment:
    lesion: np.ndarray  # bool, on the grid of the inputs
    core_ml: float
    hypoperfusion_ml: float
    mismatch: Mismatch
    defuse3: Decision
    dawn: DawnResult | None  # None without an age: DAWN's groups depend on it
    network_ml: float  # the network's own lesion (probability >= 0.5, with the core)
    threshold: float  # the probability the lesion starts at: 0.5, or where a calibration stopped
    calibration: VolumeCalibration | None = None

    def as_metrics(self) -> HypoperfusionVolumes:
        """The volumes and decisions as the METRICS document reports them (rounded for reading, not for deciding:
        the decisions above were taken on the unrounded values)."""
        return HypoperfusionVolumes(
            core_ml=round(self.core_ml, 2),
            hypoperfusion_ml=round(self.hypoperfusion_ml, 2),
            mismatch_ml=round(self.mismatch.volume_ml, 2),
            mismatch_ratio=round(self.mismatch.ratio, 3),
            mismatch_ratio_capped=self.mismatch.ratio_capped,
            defuse3=self.defuse3.as_dict(),
            dawn=None if self.dawn is None else self.dawn.as_dict(),
            lesion_rule=LesionRule(calibrated=self.calibration is not None,
                                   network_ml=round(self.network_ml, 2),
                                   probability_threshold=round(self.threshold, 4),
                                   calibration=None if self.calibration is None else self.calibration.as_dict()),
            lesion_withheld=None,
        )


def assess_hypoperfusion(probability: np.ndarray, core: np.ndarray, brain: np.ndarray, affine: np.ndarray, *,
                         nihss: float | None, age: float | None, calibration: VolumeCalibration | None = None,
                         ) -> HypoperfusionAssessment:
    """Lesion, core and lesion volumes (from ``affine``'s voxel size), mismatch, DEFUSE 3 and DAWN (None without
    an age or an NIHSS; with no NIHSS the network was not run, so no calibration applies either)."""
    lesion = lesion_mask(probability, core, brain)
    core_ml = volume_ml(core, affine)
    network_ml = volume_ml(lesion, affine)
    threshold = LESION_PROBABILITY_THRESHOLD
    if nihss is None:
        calibration = None
    if calibration is not None:
        voxel = volume_ml(np.ones((1, 1, 1), dtype=bool), affine)
        lesion, threshold = calibrated_lesion(probability, core, brain, voxel,
                                              calibration.expected_ml(network_ml, core_ml, nihss))
    hypo_ml = volume_ml(lesion, affine)
    mm = mismatch(hypo_ml, core_ml)
    dawn = None if age is None or nihss is None else dawn_eligibility(age, nihss, core_ml)
    return HypoperfusionAssessment(lesion, core_ml, hypo_ml, mm, defuse3_target_mismatch(core_ml, mm), dawn,
                                   network_ml, threshold, calibration)


def assess_on_scan(probability_mni: np.ndarray, core: np.ndarray, brain: np.ndarray, grid: NativeGrid, *,
                   nihss: float | None, age: float | None, calibration: VolumeCalibration | None = None,
                   ) -> tuple[np.ndarray, HypoperfusionAssessment]:
    """The U-Net's probability (MNI 2 mm grid) brought onto the scan's RAS grid through the registration, and
    everything counted there, on the scan's own voxels (``core`` and ``brain`` are on that grid)."""
    probability = mni_to_input_grid(probability_mni, grid) * np.asarray(brain, dtype=np.float32)
    return probability, assess_hypoperfusion(probability, core, brain, grid.ras_affine, nihss=nihss, age=age,
                                             calibration=calibration)


def plausibility_checks(assessment: HypoperfusionAssessment, core: np.ndarray, grid: NativeGrid, *, side: str,
                        brain_ml: float, domain: quality.TrainingDomain | None, run: bool = True,
                        nihss_given: bool = True) -> list[quality.Check]:
    """The checks on what came out, for the server and the held-out evaluation alike: the core, and (when the
    network ran) whether its lesion is one a stroke on the side it was told, around a core like this one, makes in
    what the network was trained on. A failure withholds the lesion (``quality.LESION``), never silently."""
    checks = [quality.core_check(assessment.core_ml, brain_ml)]
    if not run:
        return [*checks, quality.assessable_check(side, nihss_given)]
    core = np.asarray(core, dtype=bool)
    beyond = assessment.lesion & ~core
    fraction = None
    if side in ("left", "right"):
        half = hemisphere(grid.ras_shape, grid.mni_affine, side)
        if float(beyond.sum()) * grid.voxel_ml >= quality.MIN_LOCATED_ML:
            fraction = float((beyond & half).sum()) / float(beyond.sum())
        core_fraction = (float((core & half).sum()) / float(core.sum())
                         if assessment.core_ml >= quality.MIN_LOCATED_ML else None)
        checks.append(quality.core_side_check(side, assessment.core_ml, core_fraction))
    checks += quality.lesion_checks(assessment.hypoperfusion_ml, assessment.core_ml, brain_ml, side, fraction)
    checks.append(quality.core_domain_check(assessment.core_ml, domain))
    if domain is not None and domain.lesion_by_core:  # recorded since phantom version 4
        checks.append(quality.lesion_domain_check(assessment.hypoperfusion_ml, assessment.core_ml, domain))
    return checks

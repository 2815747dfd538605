"""The clinical quantities of SPEC section 4, as the server computes them.

Volumes come from the voxel size of the image they were measured on. Decisions return
the criteria they rest on and which values sit within 10 % of a threshold, because a
DEFUSE 3 "no" at a core of 69 mL reads differently from one at 20 mL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .geometry import check_affine

CORE_ADC_THRESHOLD = 620e-6  # mm^2/s
LESION_PROBABILITY_THRESHOLD = 0.5
MISMATCH_RATIO_CAP = 20.0
NEAR_THRESHOLD_FRACTION = 0.10

DEFUSE3_MAX_CORE_ML = 70.0
DEFUSE3_MIN_RATIO = 1.8
DEFUSE3_MIN_MISMATCH_ML = 15.0


def volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    """Volume of a boolean mask in mL (1 mL = 1000 mm^3)."""
    voxel_mm3 = abs(float(np.linalg.det(check_affine(affine)[:3, :3])))
    return float(np.count_nonzero(mask)) * voxel_mm3 / 1000.0


def near_threshold(value: float, threshold: float, fraction: float = NEAR_THRESHOLD_FRACTION) -> bool:
    """True when ``value`` lies within ``fraction`` of ``threshold`` (relative to the threshold)."""
    return abs(value - threshold) <= fraction * abs(threshold)


@dataclass(frozen=True)
class Mismatch:
    volume_ml: float  # hypoperfusion - core
    ratio: float  # hypoperfusion / core, capped at 20
    ratio_capped: bool


def mismatch(hypoperfusion_ml: float, core_ml: float) -> Mismatch:
    """Mismatch volume and ratio; the studies cap the ratio at 20 when the core is 0 or the ratio exceeds 20."""
    volume = hypoperfusion_ml - core_ml
    if core_ml <= 0.0:
        return Mismatch(volume, MISMATCH_RATIO_CAP if hypoperfusion_ml > 0 else 0.0, hypoperfusion_ml > 0)
    ratio = hypoperfusion_ml / core_ml
    return Mismatch(volume, min(ratio, MISMATCH_RATIO_CAP), ratio > MISMATCH_RATIO_CAP)


@dataclass(frozen=True)
class Decision:
    eligible: bool
    criteria: dict[str, bool]
    near_threshold: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def defuse3_target_mismatch(core_ml: float, mm: Mismatch) -> Decision:
    """Core <= 70 mL and mismatch ratio >= 1.8 and mismatch volume >= 15 mL."""
    criteria = {
        "core_le_70ml": core_ml <= DEFUSE3_MAX_CORE_ML,
        "ratio_ge_1_8": mm.ratio >= DEFUSE3_MIN_RATIO,
        "mismatch_ge_15ml": mm.volume_ml >= DEFUSE3_MIN_MISMATCH_ML,
    }
    near = [name for name, value, threshold in (
        ("core_ml", core_ml, DEFUSE3_MAX_CORE_ML),
        ("mismatch_ratio", mm.ratio, DEFUSE3_MIN_RATIO),
        ("mismatch_ml", mm.volume_ml, DEFUSE3_MIN_MISMATCH_ML),
    ) if near_threshold(value, threshold)]
    return Decision(all(criteria.values()), criteria, near)


@dataclass(frozen=True)
class DawnResult:
    eligible: bool
    groups: dict[str, bool]  # A, B, C
    near_threshold: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def dawn_eligibility(age: float, nihss: float, core_ml: float) -> DawnResult:
    """DAWN clinical-core mismatch: (A) age >= 80, NIHSS >= 10, core < 21 mL; (B) age < 80, NIHSS >= 10,
    core < 31 mL; (C) age < 80, NIHSS >= 20, core 31 to < 51 mL."""
    groups = {
        "A": age >= 80 and nihss >= 10 and core_ml < 21.0,
        "B": age < 80 and nihss >= 10 and core_ml < 31.0,
        "C": age < 80 and nihss >= 20 and 31.0 <= core_ml < 51.0,
    }
    thresholds = [21.0, 31.0, 51.0] if age < 80 else [21.0]
    near = ["core_ml"] if any(near_threshold(core_ml, t) for t in thresholds) else []
    return DawnResult(any(groups.values()), groups, near)


SMALL_FRACTION = 1.0 / 8.0  # "small": less than 1 of the 8 MCA regions
HALF_FRACTION = 0.5  # "> 1/2": more than 4 of 8


def collateral_perfusion_score(capillary: float, early_venous: float, late_venous: float) -> int:
    """CPS 0-5 from the hypoperfused fraction of the ischaemic MCA territory in three phases.

    Rules of SPEC section 4, tried from 5 down; fractions are of the 8 MCA regions
    (insula, basal ganglia / internal capsule, M1-M6).
    """
    for name, value in (("capillary", capillary), ("early_venous", early_venous), ("late_venous", late_venous)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} fraction must lie in [0, 1], got {value}")

    def small(x: float) -> bool:
        return x < SMALL_FRACTION

    def at_most_half(x: float) -> bool:
        return x <= HALF_FRACTION

    c, e, late = capillary, early_venous, late_venous
    if small(c) and small(e) and small(late):
        return 5
    if at_most_half(c) and small(e):
        return 4
    if (at_most_half(c) and at_most_half(e)) or (not at_most_half(c) and small(e)):
        return 3
    if not at_most_half(c) and at_most_half(e):
        return 2
    if not at_most_half(e) and at_most_half(late):
        return 1
    return 0

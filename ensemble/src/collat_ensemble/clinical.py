"""The clinical quantities of SPEC section 4, as the server computes them.

Volumes come from the voxel size of the image they were measured on. Decisions return
the criteria they rest on and which values sit within 10 % of a threshold, because a
DEFUSE 3 "no" at a core of 69 mL reads differently from one at 20 mL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import overload

import numpy as np

from collat_contract.metrics import Dawn, Defuse3

from .geometry import check_affine

LESION_PROBABILITY_THRESHOLD = 0.5
MISMATCH_RATIO_CAP = 20.0
NEAR_THRESHOLD_FRACTION = 0.10

DEFUSE3_MAX_CORE_ML = 70.0
DEFUSE3_MIN_RATIO = 1.8
DEFUSE3_MIN_MISMATCH_ML = 15.0

# DAWN's clinical-core mismatch groups; the rule and its near-threshold flags both read these.
DAWN_AGE_SPLIT = 80.0  # years: group A at or above, B and C below
DAWN_MIN_NIHSS = 10  # groups A and B
DAWN_GROUP_C_MIN_NIHSS = 20
DAWN_GROUP_A_MAX_CORE_ML = 21.0  # core below it
DAWN_GROUP_B_MAX_CORE_ML = 31.0  # core below it; group C starts at it
DAWN_GROUP_C_MAX_CORE_ML = 51.0  # core below it


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

    def as_dict(self) -> Defuse3:
        return Defuse3(eligible=self.eligible, criteria=dict(self.criteria), near_threshold=list(self.near_threshold))


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

    def as_dict(self) -> Dawn:
        return Dawn(eligible=self.eligible, groups=dict(self.groups), near_threshold=list(self.near_threshold))


def dawn_eligibility(age: float, nihss: float, core_ml: float) -> DawnResult:
    """DAWN clinical-core mismatch: (A) age >= 80, NIHSS >= 10, core < 21 mL; (B) age < 80, NIHSS >= 10,
    core < 31 mL; (C) age < 80, NIHSS >= 20, core 31 to < 51 mL (the ``DAWN_*`` constants)."""
    groups = {
        "A": age >= DAWN_AGE_SPLIT and nihss >= DAWN_MIN_NIHSS and core_ml < DAWN_GROUP_A_MAX_CORE_ML,
        "B": age < DAWN_AGE_SPLIT and nihss >= DAWN_MIN_NIHSS and core_ml < DAWN_GROUP_B_MAX_CORE_ML,
        "C": age < DAWN_AGE_SPLIT and nihss >= DAWN_GROUP_C_MIN_NIHSS
        and DAWN_GROUP_B_MAX_CORE_ML <= core_ml < DAWN_GROUP_C_MAX_CORE_ML,
    }
    thresholds = [DAWN_GROUP_A_MAX_CORE_ML, DAWN_GROUP_B_MAX_CORE_ML, DAWN_GROUP_C_MAX_CORE_ML] \
        if age < DAWN_AGE_SPLIT else [DAWN_GROUP_A_MAX_CORE_ML]
    near = ["core_ml"] if any(near_threshold(core_ml, t) for t in thresholds) else []
    return DawnResult(any(groups.values()), groups, near)


SMALL_FRACTION = 1.0 / 8.0  # "small": less than 1 of the 8 MCA regions
HALF_FRACTION = 0.5  # "> 1/2": more than 4 of 8


@overload
def collateral_perfusion_score(capillary: float, early_venous: float, late_venous: float) -> int: ...


@overload
def collateral_perfusion_score(capillary: np.ndarray | float, early_venous: np.ndarray | float,
                               late_venous: np.ndarray | float) -> np.ndarray: ...


def collateral_perfusion_score(capillary: np.ndarray | float, early_venous: np.ndarray | float,
                               late_venous: np.ndarray | float) -> int | np.ndarray:
    """CPS 0-5 from the hypoperfused fraction of the ischaemic MCA territory in three phases.

    Rules of SPEC section 4, tried from 5 down; fractions are of the 8 MCA regions
    (insula, basal ganglia / internal capsule, M1-M6). Scalars give an ``int``; arrays (broadcast
    together) give an int array of grades, so the training code's fit of the CPS ratios grades
    thousands of candidate rules through this one rule rather than a copy of it.
    """
    fractions = {name: np.asarray(value, dtype=np.float64) for name, value in
                 (("capillary", capillary), ("early_venous", early_venous), ("late_venous", late_venous))}
    for name, value in fractions.items():
        outside = value[~((value >= 0.0) & (value <= 1.0))]  # NaN included
        if outside.size:
            raise ValueError(f"{name} fraction must lie in [0, 1], got {float(outside.flat[0])}")
    c, e, late = fractions.values()
    small_c, small_e, small_late = c < SMALL_FRACTION, e < SMALL_FRACTION, late < SMALL_FRACTION
    half_c, half_e, half_late = c <= HALF_FRACTION, e <= HALF_FRACTION, late <= HALF_FRACTION
    grade = np.select([small_c & small_e & small_late,  # 5
                       half_c & small_e,  # 4
                       (half_c & half_e) | (~half_c & small_e),  # 3
                       ~half_c & half_e,  # 2
                       ~half_e & half_late],  # 1
                      [5, 4, 3, 2, 1], default=0)
    return int(grade) if grade.ndim == 0 else grade

"""The ischaemic MCA territory in template space, and the hypoperfused fractions CPS rests on.

The studies grade CPS by eye: over the eight MCA regions of the ischaemic hemisphere, how much
is darker than the other side in the capillary, early and late venous phases (SPEC section 4).
Comparing a hemisphere with its mirror needs the brain's midline plane, which a head turned in
the scanner moves off any column of the image. So the comparison happens in template space:
the perfusion series' baseline is registered to the MNI template (:mod:`.registration`, the
same affine registration as the DWI's) and the maps are resampled onto a 4 mm MNI grid that is
symmetric about the midline plane x = 0, where

* the mirror of a voxel is the voxel at -x (axis 0 reversed);
* the MCA territory is an ellipsoid per hemisphere (:data:`MCA_CENTRE_MM`, :data:`MCA_RADII_MM`)
  covering the insula, the basal ganglia and the lateral frontal, parietal and temporal cortex.
  Geometry, not an atlas: the published arterial-territory atlases we know of are either not
  licensed for redistribution or not at hand offline, and a regional atlas would still be
  reduced to the same voxel fraction. The fraction of territory voxels stands in for "how many
  of the 8 regions", so the score is an estimate and is reported as one;
* a territory voxel is hypoperfused in a phase when its brightness (the map's [-1, 1] moved to
  [0, 1]) is below ``1 - ratio`` times its mirror's, where the mirror shows contrast at all
  (brightness >= ``floor``). The ratios are fitted on training phantoms, on the maps of the
  network that serves them (``collat-train fit-cps``: into its model card's ``cps_rule``, which the
  server reads; ``cps_rule.json`` here for a network without one); the phantom's own grade uses the
  same comparison on its noiseless contrast with :data:`TRUTH_RATIO` (``phantom.grading``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from collat_contract.metrics import CollateralGrade

from .clinical import collateral_perfusion_score
from .errors import InputValidationError
from .geometry import resample
from .phases import PHASE_NAMES

CPS_PHASES = ("capillary", "early_venous", "late_venous")
CPS_LABELS = {5: "excellent", 4: "good", 3: "intermediate-good", 2: "intermediate-poor", 1: "poor", 0: "very poor"}
# The assessment grid: 4 mm MNI voxels, x from -88 to +88 mm, so that reversing axis 0 mirrors about x = 0.
ASSESSMENT_AFFINE = np.array([[4.0, 0, 0, -88.0], [0, 4.0, 0, -124.0], [0, 0, 4.0, -70.0], [0, 0, 0, 1.0]])
ASSESSMENT_SHAPE = (45, 54, 45)
MCA_CENTRE_MM = (36.0, -14.0, 12.0)  # |x|, y, z in MNI mm: the Sylvian fissure's centre
MCA_RADII_MM = (30.0, 55.0, 40.0)
MIDLINE_GAP_MM = 2.0  # voxels this close to the midline plane belong to neither hemisphere
# The phantom's definition of "darker": less than 70 % of the mirror's contrast over the phase.
TRUTH_RATIO = 0.3
RULE_FILE = Path(__file__).with_name("cps_rule.json")
# Fewer usable territory voxels than this (4 mm: about 10 mL) cannot carry a grade.
MIN_TERRITORY_VOXELS = 150


@dataclass(frozen=True)
class CPSRule:
    """How much darker than its mirror a voxel must be to count as hypoperfused, per CPS phase."""

    ratios: dict[str, float]
    floor: float
    fitted_on: str  # where the numbers come from

    @classmethod
    def from_dict(cls, doc: dict, source: str) -> CPSRule:
        """The rule as ``collat-train fit-cps`` writes it (a file, or a 3D-MROD-Net's model card); ``source`` names
        where it came from in the error."""
        try:
            ratios = {p: float(doc["ratios"][p]) for p in CPS_PHASES}
            floor = float(doc["floor"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputValidationError(f"{source}: not a CPS rule ({exc})") from None
        if not all(0.0 < r < 1.0 for r in ratios.values()) or not 0.0 <= floor < 1.0:
            raise InputValidationError(f"{source}: not a CPS rule (ratios {ratios} must lie in (0, 1), "
                                       f"floor {floor} in [0, 1))")
        return cls(ratios, floor, str(doc.get("fitted_on", "")))

    @classmethod
    def load(cls, path: Path = RULE_FILE) -> CPSRule:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputValidationError(f"{path}: not a CPS rule ({exc})") from None
        return cls.from_dict(doc, str(path))

    def as_dict(self) -> dict:
        return {"ratios": self.ratios, "floor": self.floor, "fitted_on": self.fitted_on}


@lru_cache(maxsize=1)
def default_rule() -> CPSRule:
    """The rule for maps whose network has none of its own in its model card (``cps_rule``): fitted on the maps of
    the first shipped 3D-MROD-Net (tiny)."""
    return CPSRule.load()


@dataclass(frozen=True)
class CollateralAssessment:
    ischaemic_side: str  # "left" | "right"
    side_source: str  # "clinical" | "maps"
    hypoperfused_fraction: dict[str, float]  # per CPS phase, of the usable ischaemic MCA territory
    cps: int
    territory_voxels: int

    def as_dict(self) -> CollateralGrade:
        """The METRICS document's grade fields (``cps_withheld`` null: there is a grade)."""
        return CollateralGrade(ischaemic_side=self.ischaemic_side, side_source=self.side_source,
                               hypoperfused_fraction=self.hypoperfused_fraction, cps_estimate=self.cps,
                               cps_label=CPS_LABELS[self.cps], territory_voxels=self.territory_voxels,
                               cps_withheld=None)


def _world() -> np.ndarray:
    ijk = np.indices(ASSESSMENT_SHAPE, dtype=np.float64).reshape(3, -1)
    return (ASSESSMENT_AFFINE[:3, :3] @ ijk + ASSESSMENT_AFFINE[:3, 3:]).T.reshape(*ASSESSMENT_SHAPE, 3)


@lru_cache(maxsize=2)
def mca_territory(side: str) -> np.ndarray:
    """Boolean MCA territory of one hemisphere on the assessment grid (MNI RAS: the patient's left has x < 0)."""
    if side not in ("left", "right"):
        raise InputValidationError(f"the ischaemic side must be left or right for a territory, got {side!r}")
    world = _world()
    sign = -1.0 if side == "left" else 1.0
    centre = np.array([sign * MCA_CENTRE_MM[0], MCA_CENTRE_MM[1], MCA_CENTRE_MM[2]])
    inside = ((((world - centre) / np.array(MCA_RADII_MM)) ** 2).sum(axis=-1)) <= 1.0
    return inside & (world[..., 0] * sign >= MIDLINE_GAP_MM)


def mirror(volume: np.ndarray) -> np.ndarray:
    """Reflection about the MNI midline plane of a volume on the assessment grid."""
    return np.ascontiguousarray(volume[::-1])


def to_assessment_grid(volume: np.ndarray, voxel_to_mni: np.ndarray, order: int = 1) -> np.ndarray:
    """A (x, y, z[, C]) volume whose voxels map to MNI mm by ``voxel_to_mni`` -> the assessment grid (0 outside)."""
    return resample(volume, voxel_to_mni, ASSESSMENT_AFFINE, ASSESSMENT_SHAPE, order=order)


def brightness(maps: np.ndarray) -> np.ndarray:
    """Map values on the [-1, 1] scale -> [0, 1], where 0 is no contrast."""
    return np.clip((np.asarray(maps, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)


def infer_side(values: np.ndarray, valid: np.ndarray) -> str:
    """The hemisphere whose MCA territory is darker in the capillary and early venous phases (values: the three
    CPS phases' brightness on the assessment grid, last axis in :data:`CPS_PHASES` order)."""
    signal = values[..., 0] + values[..., 1]
    means = {}
    for side in ("left", "right"):
        where = mca_territory(side) & valid
        if not where.any():
            raise InputValidationError("the perfusion series does not cover both MCA territories: the ischaemic "
                                       "side is unknown")
        means[side] = float(signal[where].mean())
    return "left" if means["left"] < means["right"] else "right"


def territory_pairs(values: np.ndarray, valid: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) brightness of the usable territory voxels and (n, 3) of their mirrors: a voxel is usable when it and
    its mirror are valid (brain seen by the series). ``values``: (x, y, z, 3) on the assessment grid in
    :data:`CPS_PHASES` order."""
    usable = mca_territory(side) & valid & mirror(valid)
    return values[usable], mirror(values)[usable]


def darker_fractions(values: np.ndarray, mirrored: np.ndarray, ratios: dict[str, float],
                     floor: float) -> dict[str, float]:
    """Per CPS phase, the fraction of the pairs whose voxel is below ``1 - ratio`` times a mirror that shows
    contrast (>= ``floor``)."""
    count = max(len(values), 1)
    return {phase: float(((values[:, i] < (1.0 - ratios[phase]) * mirrored[:, i]) & (mirrored[:, i] >= floor)).sum()
                         / count) for i, phase in enumerate(CPS_PHASES)}


def hypoperfused_fractions(values: np.ndarray, valid: np.ndarray, side: str, ratios: dict[str, float],
                           floor: float) -> tuple[dict[str, float], int]:
    """Per CPS phase, the fraction of the usable territory darker than ``1 - ratio`` times its mirror, and how many
    voxels are usable (see :func:`territory_pairs`)."""
    inside, mirrored = territory_pairs(values, valid, side)
    return darker_fractions(inside, mirrored, ratios, floor), len(inside)


def assess_collaterals(maps: np.ndarray, mask: np.ndarray, voxel_to_mni: np.ndarray, side: str | None = None,
                       rule: CPSRule | None = None) -> CollateralAssessment:
    """Hypoperfused fractions and the CPS estimate from five-phase maps (x, y, z, 5) in [-1, 1] and their brain
    mask, whose voxels map to MNI mm by ``voxel_to_mni`` (the registration times the grid's affine)."""
    if maps.ndim != 4 or maps.shape[-1] != len(PHASE_NAMES) or maps.shape[:3] != mask.shape:
        raise InputValidationError(f"maps {maps.shape} and mask {mask.shape} do not form (x, y, z, 5) + (x, y, z)")
    rule = rule or default_rule()
    picked = np.stack([maps[..., PHASE_NAMES.index(p)] for p in CPS_PHASES], axis=-1)
    values = to_assessment_grid(brightness(picked), voxel_to_mni)
    valid = to_assessment_grid(np.asarray(mask, dtype=np.float32), voxel_to_mni) >= 0.5
    source = "clinical" if side in ("left", "right") else "maps"
    resolved = side if source == "clinical" else infer_side(values, valid)
    fractions, count = hypoperfused_fractions(values, valid, resolved, rule.ratios, rule.floor)
    if count < MIN_TERRITORY_VOXELS:
        raise InputValidationError(f"the perfusion series covers {count} voxels of the {resolved} MCA territory and "
                                   f"its mirror (at least {MIN_TERRITORY_VOXELS} are needed for a grade)")
    cps = collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES))
    return CollateralAssessment(resolved, source, fractions, cps, count)

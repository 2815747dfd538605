"""The ischaemic MCA territory on a collateral map, and the hypoperfused fractions CPS rests on.

The studies grade CPS by eye over eight MCA regions. Without an atlas registration of the
(native-space) perfusion series, the server approximates the MCA territory geometrically on
the RAS network grid: the lateral part of each hemisphere (excluding the medial band that
the anterior cerebral artery supplies) and the middle of the antero-posterior extent
(excluding the occipital pole that the posterior cerebral artery supplies), between the
inferior and superior fifths of the brain. A voxel of the ischaemic side is hypoperfused in
a phase when its value lies clearly below its mirror voxel on the other hemisphere. The
fraction of territory voxels so marked stands in for "how many of the 8 regions", so the
score is an estimate and is reported as one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clinical import collateral_perfusion_score
from .errors import InputValidationError
from .phases import PHASE_NAMES

CPS_PHASES = ("capillary", "early_venous", "late_venous")
# A 0.2 drop on the [-1, 1] map scale (10 % of its range) is "visibly darker" on a window of the full range.
HYPOPERFUSION_MARGIN = 0.2
MEDIAL_BAND = 0.2  # fraction of the hemisphere width next to the midline left to the ACA
POSTERIOR_BAND = 0.25  # fraction of the brain's A-P extent at the back left to the PCA
VERTICAL_BAND = 0.2  # inferior and superior fractions of the brain's height left out
CPS_LABELS = {5: "excellent", 4: "good", 3: "intermediate-good", 2: "intermediate-poor", 1: "poor", 0: "very poor"}


@dataclass(frozen=True)
class CollateralAssessment:
    ischaemic_side: str  # "left" | "right"
    side_source: str  # "clinical" | "maps"
    hypoperfused_fraction: dict[str, float]  # per phase, of the ischaemic MCA territory
    cps: int
    territory_voxels: int

    def as_dict(self) -> dict:
        return {"ischaemic_side": self.ischaemic_side, "side_source": self.side_source,
                "hypoperfused_fraction": self.hypoperfused_fraction, "cps_estimate": self.cps,
                "cps_label": CPS_LABELS[self.cps], "territory_voxels": self.territory_voxels}


def _midline(mask: np.ndarray) -> float:
    columns = np.nonzero(mask.any(axis=(1, 2)))[0]
    weights = mask.sum(axis=(1, 2))[columns]
    return float((columns * weights).sum() / weights.sum())


def mirror_x(volume: np.ndarray, midline: float) -> np.ndarray:
    """Reflect a (x, y, z, ...) RAS volume across the column ``midline`` (nearest column, edges clamped)."""
    n = volume.shape[0]
    source = np.clip(np.rint(2.0 * midline - np.arange(n)).astype(int), 0, n - 1)
    return volume[source]


def mca_territory(mask: np.ndarray, side: str) -> np.ndarray:
    """Boolean (x, y, z) approximation of one hemisphere's MCA territory inside ``mask`` (RAS order)."""
    if side not in ("left", "right"):
        raise InputValidationError(f"the ischaemic side must be left or right for a territory, got {side!r}")
    mid = _midline(mask)
    xs = np.nonzero(mask.any(axis=(1, 2)))[0]
    ys = np.nonzero(mask.any(axis=(0, 2)))[0]
    zs = np.nonzero(mask.any(axis=(0, 1)))[0]
    x = np.arange(mask.shape[0])[:, None, None]
    y = np.arange(mask.shape[1])[None, :, None]
    z = np.arange(mask.shape[2])[None, None, :]
    # RAS: low x is the patient's left.
    left = x <= mid - MEDIAL_BAND * (mid - xs[0])
    right = x >= mid + MEDIAL_BAND * (xs[-1] - mid)
    lateral = left if side == "left" else right
    y0 = ys[0] + POSTERIOR_BAND * (ys[-1] - ys[0])
    z0, z1 = zs[0] + VERTICAL_BAND * (zs[-1] - zs[0]), zs[-1] - VERTICAL_BAND * (zs[-1] - zs[0])
    return mask & lateral & (y >= y0) & (z >= z0) & (z <= z1)


def infer_side_from_maps(maps: np.ndarray, mask: np.ndarray) -> str:
    """The hemisphere whose capillary and early-venous phases are darker on average (RAS grid)."""
    mid = _midline(mask)
    x = np.arange(mask.shape[0])[:, None, None]
    left, right = mask & (x < mid), mask & (x > mid)
    if not left.any() or not right.any():
        raise InputValidationError("the brain mask does not span both hemispheres; the ischaemic side is unknown")
    signal = maps[..., 1] + maps[..., 2]
    return "left" if float(signal[left].mean()) < float(signal[right].mean()) else "right"


def assess_collaterals(maps: np.ndarray, mask: np.ndarray, side: str | None = None) -> CollateralAssessment:
    """Hypoperfused fractions and the CPS estimate from five-phase maps (x, y, z, 5) in [-1, 1] on a RAS grid."""
    if maps.ndim != 4 or maps.shape[-1] != len(PHASE_NAMES) or maps.shape[:3] != mask.shape:
        raise InputValidationError(f"maps {maps.shape} and mask {mask.shape} do not form (x, y, z, 5) + (x, y, z)")
    if mask.sum() < 100:
        raise InputValidationError("the brain mask holds fewer than 100 voxels: no collateral assessment possible")
    source = "clinical" if side in ("left", "right") else "maps"
    resolved = side if source == "clinical" else infer_side_from_maps(maps, mask)
    territory = mca_territory(mask, resolved)
    mid = _midline(mask)
    mirrored, mirrored_mask = mirror_x(maps, mid), mirror_x(mask, mid)
    usable = territory & mirrored_mask
    fractions: dict[str, float] = {}
    for i, name in enumerate(PHASE_NAMES):
        darker = maps[..., i] < mirrored[..., i] - HYPOPERFUSION_MARGIN
        fractions[name] = float((darker & usable).sum() / max(int(usable.sum()), 1))
    cps = collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES))
    return CollateralAssessment(resolved, source, fractions, cps, int(usable.sum()))

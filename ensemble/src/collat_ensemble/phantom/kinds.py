"""What hospitals scan (phantom version 4): the kinds of case and the lesion geometry of each.

A U-Net that only ever saw unilateral MCA strokes draws MCA lesions on every brain. So the phantom makes the
scans a stroke unit actually receives (fractions for :func:`draw_kind`):

* ``mca`` (40 %): versions 1-3's stroke, unchanged (:meth:`.physiology.Stroke.mca_territory`);
* ``lacune`` (12 %): one near-spherical deep core of 0.2-0.8 mL (putamen, internal capsule, thalamus, corona
  radiata, pons) with a small territory whose delay reaches Tmax 6 s over a few mL at most, often not at all;
* ``posterior`` (14 %): a PCA (occipital / medial temporal), cerebellar-hemisphere or brainstem territory,
  core 1-25 mL, hypoperfusion beyond it but inside the territory;
* ``mimic`` (14 %): no lesion at all (seizure, migraine, ...);
* ``chronic`` (10 %): an old cortical/subcortical infarct of 2-40 mL (CSF-like ADC, dark on DWI), nothing acute;
* ``emboli`` (10 %): two or three small embolic territories in both hemispheres, core 0.3-5 mL each.

Each kind's geometry comes from its own stream, and cores are sized on the case's diffusion grid
(:func:`calibrate_cores`): a target volume is met exactly by the true core (the noiseless-ADC rule), whatever the
partial volume with CSF. Nothing here draws from the case's main stream, so MCA perfusion keeps its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .physiology import Territory, max_delay_for, min_flow_for
from .variation import _template_tissue, stream

KINDS: tuple[str, ...] = ("mca", "lacune", "posterior", "mimic", "chronic", "emboli")
KIND_FRACTIONS: dict[str, float] = {"mca": 0.40, "lacune": 0.12, "posterior": 0.14, "mimic": 0.14,
                                    "chronic": 0.10, "emboli": 0.10}
KIND_STREAM = 1
LESION_STREAM = 2
# NIHSS range of each kind (the MCA one grows with the lesion, as in versions 1-3).
NIHSS_RANGE: dict[str, tuple[int, int]] = {"mca": (0, 42), "lacune": (0, 8), "posterior": (1, 15),
                                           "mimic": (0, 20), "chronic": (0, 10), "emboli": (1, 15)}
KINDS_WITHOUT_LESION = ("mimic", "chronic")

# Lacunar sites, MNI mm with x for the left hemisphere (mirrored for the right); weights sum to 1.
LACUNE_SITES: dict[str, tuple[float, tuple[tuple[float, float], ...]]] = {
    "basal_ganglia": (0.30, ((-28.0, -22.0), (-2.0, 8.0), (-2.0, 6.0))),
    "internal_capsule": (0.15, ((-25.0, -20.0), (-14.0, -6.0), (4.0, 12.0))),
    "thalamus": (0.20, ((-15.0, -10.0), (-22.0, -14.0), (2.0, 8.0))),
    "corona_radiata": (0.20, ((-28.0, -22.0), (-20.0, 8.0), (24.0, 32.0))),
    "pons": (0.15, ((-6.0, -3.0), (-30.0, -24.0), (-34.0, -26.0))),
}
# Posterior-circulation territories: (weight, centre ranges for the left side, radii mm, hemispheric?, core mL).
POSTERIOR_SITES: dict[str, tuple[float, tuple[tuple[float, float], ...], tuple[float, float, float], bool,
                                 tuple[float, float]]] = {
    "pca": (0.50, ((-24.0, -16.0), (-80.0, -66.0), (-4.0, 8.0)), (20.0, 30.0, 22.0), True, (3.0, 25.0)),
    "cerebellum": (0.30, ((-30.0, -20.0), (-70.0, -54.0), (-38.0, -26.0)), (18.0, 22.0, 16.0), True, (2.0, 20.0)),
    "pons": (0.13, ((-6.0, -2.5), (-30.0, -24.0), (-34.0, -24.0)), (9.0, 10.0, 11.0), False, (1.0, 5.0)),
    "midbrain": (0.07, ((-6.0, -3.0), (-26.0, -20.0), (-17.0, -14.0)), (9.0, 10.0, 11.0), False, (1.0, 5.0)),
}
# Cortical/subcortical sites for emboli and old infarcts: |x|, y, z ranges (MNI mm), template tissue > 0.7 there.
CORTICAL_BOX_MM = ((18.0, 58.0), (-95.0, 60.0), (-8.0, 62.0))
EMBOLI_MIN_SEPARATION_MM = 25.0
LACUNE_CORE_ML = (0.2, 0.8)
EMBOLUS_CORE_ML = (0.3, 5.0)
OLD_INFARCT_ML = (2.0, 40.0)
MAX_GROWTH = 2.0  # a territory grows at most this much for its core to fit (calibrate_cores)


def draw_kind(seed: int) -> str:
    """The kind of case ``seed`` is in the mixed set (training and evaluation), from a stream of its own."""
    u = stream(seed, KIND_STREAM).random()
    edges = np.cumsum([KIND_FRACTIONS[k] for k in KINDS])
    return KINDS[min(int(np.searchsorted(edges, u * edges[-1], side="right")), len(KINDS) - 1)]


@dataclass(frozen=True)
class OldInfarct:
    """A chronic infarct: an ellipsoid (MNI mm) whose tissue is gone to gliosis and fluid."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    hemisphere: float
    target_ml: float
    adc: float  # mm^2/s of its tissue fraction
    t2_factor: float  # its b0 over CSF's

    def territory(self) -> Territory:
        """Its ellipsoid as a :class:`Territory` with no haemodynamic effect (only its radius is used)."""
        return Territory(self.centre, self.radii, 0.0, 1.0, 0.0, 0, hemisphere=self.hemisphere, site="old")


@dataclass(frozen=True)
class LesionPlan:
    """Everything a kind draws before any image is made."""

    kind: str
    side: str | None  # lesion side; "bilateral" for emboli; None without an acute lesion
    clinical_side: str  # what the clinician gives with the request
    territories: tuple[Territory, ...]
    core_ml: tuple[float | None, ...]  # target true core per territory; None keeps its core radius (MCA)
    max_core_radius: tuple[float, ...]  # normalized: the core stays inside its territory's delay
    strength: int | None  # collateral strength the territories used; None where it shaped nothing
    old_infarct: OldInfarct | None = None
    site: str | None = None


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


Point = tuple[float, float, float]


def _point(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...], sign: float) -> Point:
    x, y, z = (float(rng.uniform(lo, hi)) for lo, hi in ranges)
    return (-x * sign, y, z)  # ranges are for the left (x < 0): sign -1 keeps them, +1 mirrors


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _cortical_point(rng: np.random.Generator, sign: float, avoid: list[Point]) -> Point:
    """A point in cerebral tissue of one hemisphere (template GM + WM > 0.7 over the 7 mm cube around it, so a
    lesion there has tissue to lie in), clear of ``avoid``."""
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = CORTICAL_BOX_MM
    for _ in range(500):
        candidate = (sign * float(rng.uniform(xlo, xhi)), float(rng.uniform(ylo, yhi)), float(rng.uniform(zlo, zhi)))
        far = all(np.linalg.norm(np.subtract(candidate, a)) >= EMBOLI_MIN_SEPARATION_MM for a in avoid)
        if far and sum(_template_tissue(np.array(candidate), 3)) > 0.7:
            return candidate
    return (sign * 0.5 * (xlo + xhi), -20.0, 30.0)  # unreachable with these boxes; keeps the plan total


def _radii(rng: np.random.Generator, base: tuple[float, float, float] | float) -> tuple[float, float, float]:
    b = np.broadcast_to(np.asarray(base, dtype=float), (3,))
    r = b * rng.uniform(0.85, 1.15, size=3)
    return (float(r[0]), float(r[1]), float(r[2]))


def _sphere_radius_mm(ml: float) -> float:
    return float((3.0 * ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))


def plan_lesions(kind: str, seed: int, side: str, strength: int | None) -> LesionPlan:
    """The lesions of a non-MCA ``kind`` (the MCA plan is built from its :class:`.physiology.Stroke`).

    ``side``: the side for kinds with one (lacune, posterior) and the clinician's side for a mimic or an old
    infarct; emboli ignore it. ``strength``: forces the collateral strength of posterior and embolic
    territories (default drawn: 0-3, which keeps the Tmax > 6 s region beyond the core)."""
    rng = stream(seed, LESION_STREAM)
    sign = -1.0 if side == "left" else 1.0
    if kind == "mimic":
        return LesionPlan(kind, None, side, (), (), (), None)
    if kind == "chronic":
        hemisphere = -1.0 if rng.random() < 0.5 else 1.0
        target = _log_uniform(rng, *OLD_INFARCT_ML)
        centre = _cortical_point(rng, hemisphere, [])
        radii = _radii(rng, 1.3 * _sphere_radius_mm(target))
        old = OldInfarct(centre, radii, hemisphere, target, float(rng.uniform(1.5e-3, 2.4e-3)),
                         float(rng.uniform(0.75, 0.95)))
        return LesionPlan(kind, None, side, (), (), (), None, old, "cortical")
    if kind == "lacune":
        site = _pick(rng, {k: w for k, (w, _) in LACUNE_SITES.items()})
        centre = _point(rng, LACUNE_SITES[site][1], sign)
        target = _log_uniform(rng, *LACUNE_CORE_ML)
        radii = _radii(rng, _sphere_radius_mm(target) * rng.uniform(1.3, 1.8))
        # Small-vessel occlusion: a short delay (3-9 s at the centre) over a small territory, no collateral rise.
        t = Territory(centre, radii, float(rng.uniform(3.0, 9.0)), float(rng.uniform(0.3, 0.7)), 0.5, 0,
                      hemisphere=None, site=site)
        return LesionPlan(kind, side, side, (t,), (target,), (0.9,), None, None, site)
    drawn_strength = int(rng.integers(0, 4))
    g = drawn_strength if strength is None else strength
    if kind == "posterior":
        site = _pick(rng, {k: v[0] for k, v in POSTERIOR_SITES.items()})
        _, ranges, base, hemispheric, core_range = POSTERIOR_SITES[site]
        centre = _point(rng, ranges, sign)
        t = Territory(centre, _radii(rng, base), max_delay_for(g), min_flow_for(g), 0.5, g,
                      hemisphere=sign if hemispheric else None, site=site)
        return LesionPlan(kind, side, side, (t,), (_log_uniform(rng, *core_range),), (0.7,), g, None, site)
    if kind == "emboli":
        count = 2 if rng.random() < 0.6 else 3
        signs = [-1.0, 1.0] + [-1.0 if rng.random() < 0.5 else 1.0] * (count - 2)
        territories: list[Territory] = []
        targets: list[float | None] = []
        centres: list[Point] = []
        for s in signs:
            centre = _cortical_point(rng, s, centres)
            centres.append(centre)
            target = _log_uniform(rng, *EMBOLUS_CORE_ML)
            radii = _radii(rng, _sphere_radius_mm(target) * rng.uniform(1.4, 1.9))
            territories.append(Territory(centre, radii, max_delay_for(g), min_flow_for(g), 0.5, g,
                                         hemisphere=s, site="embolus"))
            targets.append(target)
        return LesionPlan(kind, "bilateral", "bilateral", tuple(territories), tuple(targets), (0.8,) * count, g,
                          None, "embolic")
    raise ValueError(f"unknown kind {kind!r}")


def calibrate_cores(plan: LesionPlan, world: np.ndarray, eligible: np.ndarray,
                    voxel_ml: float) -> tuple[Territory, ...]:
    """The plan's territories with each core radius set so its true core holds its target volume on this grid.

    ``eligible``: voxels that would measure as core if the core covered them (brain, and little enough CSF that
    the core ADC stays below the threshold). The core of a territory is its eligible voxels nearest its centre,
    so the radius is read off their sorted normalized distances. Where too little tissue lies within
    ``max_core_radius`` (a cortical site in an atrophic brain), the territory grows, up to ``MAX_GROWTH`` times,
    until its core fits: the core keeps its volume and stays inside the delay."""
    out = []
    for territory, target, limit in zip(plan.territories, plan.core_ml, plan.max_core_radius, strict=True):
        if target is None:
            out.append(territory)
            continue
        k = int(round(target / voxel_ml))
        r = territory.radius(world)
        values = r[eligible & (r < limit * MAX_GROWTH)]
        if k <= 0 or values.size == 0:
            out.append(replace(territory, core_radius=0.0))
            continue
        k = min(k, values.size)
        near = np.partition(values, [k - 1, k]) if values.size > k else np.sort(values)
        radius = float(0.5 * (near[k - 1] + near[k])) if values.size > k else float(near[-1]) * 1.0001
        growth = max(1.0, radius / limit)
        out.append(replace(territory, core_radius=radius / growth, scale=territory.scale * growth))
    return tuple(out)


def old_infarct_weight(old: OldInfarct, world: np.ndarray, brain: np.ndarray,
                       voxel_ml: float) -> np.ndarray:
    """How much of each voxel's tissue belongs to the old infarct (0..1): its ellipsoid, scaled so that the brain
    voxels it holds (weight >= 0.5) make up its target volume, with a 2 mm soft edge."""
    territory = old.territory()
    r = territory.radius(world)
    values = r[brain & np.isfinite(r)]
    k = int(round(old.target_ml / voxel_ml))
    if values.size == 0 or k <= 0:
        return np.zeros(r.shape, dtype=np.float32)
    k = min(k, values.size)
    edge = float(np.partition(values, k - 1)[k - 1])
    mean_radius = float(np.mean(old.radii))
    depth_mm = (edge - r) * mean_radius
    return np.clip(0.5 + np.where(np.isfinite(depth_mm), depth_mm, -np.inf) / 2.0, 0.0, 1.0).astype(np.float32)

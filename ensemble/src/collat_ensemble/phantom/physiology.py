"""Haemodynamics of the phantom: tissue parameters, the ischaemic territory, indicator dilution.

Literature values (healthy adults; Leenders et al. 1990 PET, Østergaard 2005 DSC review):
grey matter CBF 60 and white matter 22 mL/100 g/min; CBV 4.0 and 2.0 mL/100 g; hence
MTT = CBV/CBF = 4.0 s and 5.5 s (central volume theorem).

The ischaemic territory of an MCA stroke is an ellipsoid in one hemisphere. Within it, with r the
normalized distance from its centre (0 centre, 1 edge) and g the collateral grade
(0 very poor .. 5 excellent):

* extra arrival delay (= Tmax, since the residue is exponential) = Dmax(g) * sqrt(1 - r^2),
  Dmax(g) = 4 + 2.4 (5 - g) s for g < 5 and 2 s for g = 5: good collaterals never reach Tmax 6 s;
* CBF factor = 1 - (1 - fmin(g)) (1 - r^2), fmin(g) = 0.08 + 0.15 g;
* ischaemic core (ADC drop) for r < rcore, rcore = (0.75 - 0.09 g) x jitter.

Phantom version 4 generalises this to any number of territories (:class:`Territory`: a lacune, a PCA,
cerebellar or brainstem territory, several embolic ones), each with its own Dmax, fmin and rcore; the
haemodynamics take the worst of them voxel by voxel, and none (a mimic, an old infarct) leaves every
voxel normal. One MCA territory gives exactly the arrays of versions 1-3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy

GM_CBF, WM_CBF = 60.0, 22.0  # mL/100 g/min
GM_CBV, WM_CBV = 4.0, 2.0  # mL/100 g
TMAX_THRESHOLD_S = 6.0
# So that every SPEC grade occurs (phantom version 2), excellent collaterals deliver with the short lag below and the
# flow at the centre falls to fmin(g) of the module docstring; neither moves the Tmax > 6 s lesion or the core.
EXCELLENT_DELAY_S = 2.0
FINE_DT = 0.1  # s, resolution of the indicator-dilution calculation


MCA_CENTRE_MM = (36.0, -14.0, 12.0)  # x mirrored to the stroke's side
MCA_RADII_MM = (30.0, 55.0, 40.0)  # scaled by Stroke.size
MIDLINE_MARGIN_MM = 2.0  # a hemispheric territory stops this far short of x = 0


def max_delay_for(grade: int) -> float:
    """Dmax(g) of the module docstring: the delay at a territory's centre for collateral strength ``grade``."""
    return EXCELLENT_DELAY_S if grade == 5 else 4.0 + 2.4 * (5 - grade)


def min_flow_for(grade: int) -> float:
    """fmin(g) of the module docstring: the CBF factor at a territory's centre for collateral strength ``grade``."""
    return 0.08 + 0.15 * grade


@dataclass(frozen=True)
class Territory:
    """One ischaemic territory: an ellipsoid (MNI mm) with its own haemodynamics.

    ``radii`` are multiplied by ``scale`` in float32 exactly as versions 1-3 computed the MCA's, so an MCA case keeps
    its bytes. ``hemisphere`` (-1 left, +1 right) clips the territory ``MIDLINE_MARGIN_MM`` short of the midline;
    None lets it cross (a brainstem or lacunar one). ``core_radius`` is the normalized radius of the core;
    ``strength`` only scales the collateral blood-volume rise (0..5)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    max_delay_s: float
    min_flow: float
    core_radius: float
    strength: int
    hemisphere: float | None = None
    scale: float = 1.0
    site: str = "mca"
    profile: float = 2.0  # p in 1 - r^p: how flat the hypoperfusion is across the territory (2: versions 1-4)

    def inside(self, r: np.ndarray) -> np.ndarray:
        """1 at the centre falling to 0 at the edge: 1 - r^p (p = 2: the parabola of versions 1-4, to the bit)."""
        return np.clip(1.0 - (r**2 if self.profile == 2.0 else r**self.profile), 0.0, 1.0)

    def radius(self, world: np.ndarray) -> np.ndarray:
        """Normalized distance from the centre (0 centre, 1 edge, inf beyond the midline for a hemispheric one)."""
        centre = np.array(self.centre, dtype=np.float32)
        radii = np.array(self.radii, dtype=np.float32) * self.scale
        r = np.sqrt((((world - centre) / radii) ** 2).sum(axis=-1))
        if self.hemisphere is None:
            return r.astype(np.float32)
        wrong_side = world[..., 0] * self.hemisphere < MIDLINE_MARGIN_MM
        return np.where(wrong_side, np.inf, r).astype(np.float32)


@dataclass(frozen=True)
class Stroke:
    """The case's stroke as callers see it (``PhantomCase.stroke``).

    ``side``: "left" / "right" for a lesion in one hemisphere (MCA, lacune, posterior), "bilateral" for emboli, None
    where nothing acute is there (a mimic, an old infarct; the clinician's side is ``truth['clinical_side']``).
    ``grade``: the collateral strength of the haemodynamics (0..5; a lacune, mimic or old infarct keeps the drawn
    value, which shapes nothing there); only MCA territories use ``size`` and ``core_jitter``, the other kinds'
    geometry is in their :class:`Territory` list."""

    side: str | None  # "left" | "right" | "bilateral" | None
    grade: int  # collateral strength 0..5
    size: float  # MCA territory scale, 0.6..1.1
    core_jitter: float
    profile: float = 2.0  # the MCA territory's 1 - r^p (version 5 flattens it for very poor collaterals)

    @property
    def sign(self) -> float:
        """-1 left, +1 right (RAS: the left hemisphere has x < 0); 0 for no single hemisphere."""
        return -1.0 if self.side == "left" else 1.0 if self.side == "right" else 0.0

    @property
    def max_delay_s(self) -> float:
        return max_delay_for(self.grade)

    @property
    def min_flow(self) -> float:
        return min_flow_for(self.grade)

    @property
    def core_radius(self) -> float:
        return (0.75 - 0.09 * self.grade) * self.core_jitter

    def mca_territory(self) -> Territory:
        """The MCA ellipsoid of versions 1-3 on this stroke's side."""
        if self.sign == 0.0:
            raise ValueError(f"an MCA territory needs a left or right side, not {self.side!r}")
        centre = (self.sign * MCA_CENTRE_MM[0], MCA_CENTRE_MM[1], MCA_CENTRE_MM[2])
        return Territory(centre, MCA_RADII_MM, self.max_delay_s, self.min_flow, self.core_radius, self.grade,
                         hemisphere=self.sign, scale=self.size, site="mca", profile=self.profile)


def territory_radius(world: np.ndarray, territories: Sequence[Territory]) -> np.ndarray:
    """Normalized distance to the nearest territory (the minimum over them); inf everywhere for none."""
    if not territories:
        return np.full(world.shape[:-1], np.inf, dtype=np.float32)
    r = territories[0].radius(world)
    for territory in territories[1:]:
        r = np.minimum(r, territory.radius(world))
    return r


@dataclass(frozen=True)
class Haemodynamics:
    cbf: np.ndarray  # mL/100 g/min
    mtt: np.ndarray  # s
    delay: np.ndarray  # s, arrival delay relative to the arterial input (= Tmax)
    core: np.ndarray  # bool


def haemodynamics(anatomy: Anatomy, territories: Sequence[Territory], rng: np.random.Generator) -> Haemodynamics:
    """CBF, MTT, delay and core on the anatomy's grid. Each territory lowers flow, raises volume and delays arrival
    as the module docstring says; where territories overlap the worst of them holds. One territory computes exactly
    what versions 1-3 did (same operations, same order), so MCA perfusion keeps its bytes."""
    gm, wm = anatomy.gm, anatomy.wm
    tissue = np.maximum(gm + wm, 1e-3)
    cbf_normal = (gm * GM_CBF + wm * WM_CBF) / tissue
    cbv_normal = (gm * GM_CBV + wm * WM_CBV) / tissue
    flow_factor: np.ndarray | float = 1.0
    volume_rise: np.ndarray | float = 0.0
    extra_delay: np.ndarray | float = 0.0
    core = np.zeros(gm.shape, dtype=bool)
    for i, territory in enumerate(territories):
        r = territory.radius(anatomy.world)
        inside = territory.inside(r)
        factor = 1.0 - (1.0 - territory.min_flow) * inside
        # Collateral flow keeps volume up while flow falls: MTT lengthens (autoregulation).
        rise = 0.3 * inside * (territory.strength / 5.0)
        delay_t = territory.max_delay_s * np.sqrt(inside)
        first = i == 0
        flow_factor = factor if first else np.minimum(flow_factor, factor)
        volume_rise = rise if first else np.maximum(volume_rise, rise)
        extra_delay = delay_t if first else np.maximum(extra_delay, delay_t)
        core |= r < territory.core_radius
    cbf = cbf_normal * flow_factor
    cbv = cbv_normal * (1.0 + volume_rise)
    mtt = np.clip(60.0 * cbv / np.maximum(cbf, 1e-3), 2.0, 14.0)
    # Healthy arrival spread: distal tissue fills up to ~1.5 s after proximal tissue.
    distance = np.linalg.norm(anatomy.world - np.array([0.0, 0.0, -10.0], dtype=np.float32), axis=-1)
    smooth_noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, size=gm.shape).astype(np.float32), 3.0)
    normal_delay = 0.3 + 1.2 * np.clip(distance / 90.0, 0.0, 1.0) + 0.15 * smooth_noise / (smooth_noise.std() + 1e-6)
    delay = np.clip(normal_delay, 0.0, None) + extra_delay
    core &= (gm + wm) > 0.3
    return Haemodynamics(np.asarray(cbf, np.float32), np.asarray(mtt, np.float32), np.asarray(delay, np.float32),
                         core)


def gamma_variate(t: np.ndarray, t0: float, alpha: float, beta: float, peak: float) -> np.ndarray:
    s = np.clip(t - t0, 0.0, None)
    curve = s**alpha * np.exp(-s / beta)
    return peak * curve / max(curve.max(), 1e-12)


def arterial_input(t: np.ndarray, arrival_s: float = 9.6) -> np.ndarray:
    """Gamma-variate first pass (peak 6 mM) plus a dispersed 10 % recirculation 8 s later."""
    first = gamma_variate(t, arrival_s, 3.0, 1.5, 6.0)
    recirc = gamma_variate(t, arrival_s + 8.0, 2.0, 4.0, 0.6)
    return (first + recirc).astype(np.float64)


def venous_outflow(t: np.ndarray, aif: np.ndarray, transit_s: float = 5.0) -> np.ndarray:
    """Superior sagittal sinus: the arterial input delayed by the cerebral transit and dispersed."""
    dt = t[1] - t[0]
    shifted = np.interp(t - transit_s, t, aif, left=0.0)
    kernel = np.exp(-np.arange(0, 30, dt) / 2.5)
    kernel /= kernel.sum()
    out = np.convolve(shifted, kernel)[: len(t)]
    return 0.8 * out * aif.max() / max(out.max(), 1e-12)


def tissue_concentration(frame_times: np.ndarray, haemo: Haemodynamics, where: np.ndarray) -> np.ndarray:
    """C(t) = CBF x (AIF conv exp(-t/MTT))(t - delay) for the voxels in ``where``; shape (n, frames), mM.

    The convolution is done once per MTT bin on a fine time grid; each voxel then reads its
    curve at its own delayed sample times.
    """
    horizon = frame_times[-1] + 2.0
    fine_t = np.arange(0.0, horizon + FINE_DT, FINE_DT)
    aif = arterial_input(fine_t)
    mtt_bins = np.arange(2.0, 14.0 + 0.25, 0.25)
    residue = np.exp(-fine_t[None, :] / mtt_bins[:, None])
    conv = np.stack([np.convolve(aif, res)[: len(fine_t)] * FINE_DT for res in residue])
    mtt = haemo.mtt[where]
    delay = haemo.delay[where]
    flow = haemo.cbf[where] / 6000.0  # mL/100 g/min -> 1/s
    b = np.clip(np.round((mtt - 2.0) / 0.25).astype(np.int64), 0, len(mtt_bins) - 1)
    idx = np.round((frame_times[None, :] - delay[:, None]) / FINE_DT).astype(np.int64)
    valid = idx >= 0
    values = conv[b[:, None], np.clip(idx, 0, len(fine_t) - 1)]
    return (flow[:, None] * np.where(valid, values, 0.0)).astype(np.float32)

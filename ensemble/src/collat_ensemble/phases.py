"""The conventional five-phase collateral map: automatic, deterministic, the reference method.

SPEC section 5's clinical program places an arterial and a venous ROI by hand; this module automates every manual
step with fixed rules: brain mask, bolus arrival, contrast curves (DCE: S - S0; DSC: -ln(S / S0)), an arterial and
a venous curve picked from the voxels, five phase windows between their peaks and wash-out, and each phase's mean
contrast scaled to [-1, 1] inside the brain (-1 outside). Every rule, with its numbers:
docs/conventional-map.md. Arrays are (x, y, z, t) as nibabel returns them; any orientation works because every
rule is voxel-wise or global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from collat_contract.names import PHASE_NAMES
from collat_contract.tensors import MIN_PERFUSION_FRAMES

from .errors import InputValidationError

Modality = Literal["dce", "dsc"]
MIN_FRAMES = MIN_PERFUSION_FRAMES
_CURVE_VOXELS = 20


def brain_mask(series: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """SPEC section 2 recipe: temporal sum scaled to [0, 1], threshold, closing, erosion, dilation."""
    total = np.asarray(series).sum(axis=-1, dtype=np.float64)  # no float64 copy of the whole series
    lo, hi = float(total.min()), float(total.max())
    if hi <= lo:
        raise InputValidationError("the series is constant: no tissue to mask")
    mask = (total - lo) / (hi - lo) > threshold
    st = ndimage.generate_binary_structure(3, 1)
    # Replicate the edges first: a brain that fills the first or last slice of a 20-slice slab
    # must not be eroded away at the volume's border.
    mask = np.pad(mask, 1, mode="edge")
    mask = ndimage.binary_closing(mask, st)
    mask = ndimage.binary_erosion(mask, st)
    mask = ndimage.binary_dilation(mask, st)[1:-1, 1:-1, 1:-1]
    if not mask.any():
        raise InputValidationError("the brain mask is empty")
    return mask


@dataclass(frozen=True)
class PhaseWindows:
    arrival: int
    arterial_peak: int
    venous_peak: int
    washout: int
    bounds: tuple[tuple[int, int], ...]  # [start, stop) per phase

    def as_dict(self) -> dict:
        return {"arrival": self.arrival, "arterial_peak": self.arterial_peak, "venous_peak": self.venous_peak,
                "washout": self.washout, "phases": {n: list(b) for n, b in zip(PHASE_NAMES, self.bounds, strict=True)}}


@dataclass(frozen=True)
class CollateralMaps:
    maps: np.ndarray  # (x, y, z, 5) in [-1, 1]
    mask: np.ndarray  # (x, y, z) bool
    windows: PhaseWindows
    arterial_curve: np.ndarray
    venous_curve: np.ndarray


def bolus_arrival(mean_curve: np.ndarray) -> tuple[int, float]:
    """(arrival frame, noise SD) of a mean signal curve, or a clear error when there is no bolus."""
    head = mean_curve[: max(3, min(5, len(mean_curve) // 4))]
    sd = float(np.std(head)) if len(head) > 1 else 0.0
    base = float(np.mean(head))
    change = np.abs(mean_curve - base)
    peak = float(change.max())
    if peak <= 0 or peak < 5 * sd or peak < 1e-3 * max(abs(base), 1e-12):
        raise InputValidationError("no bolus found: the mean signal never departs from its baseline")
    above = np.nonzero((change > 5 * sd) & (change > 0.05 * peak))[0]
    arrival = int(above[0])
    if arrival < 2:
        raise InputValidationError(f"no bolus found: contrast arrives at frame {arrival}, before any baseline")
    return arrival, sd


def contrast_curves(series: np.ndarray, mask: np.ndarray, modality: Modality) -> tuple[np.ndarray, int]:
    """Per-voxel contrast (positive = more agent) for mask voxels, shape (n_voxels, t), and the arrival frame."""
    voxels = np.asarray(series, dtype=np.float64)[mask]
    mean = voxels.mean(axis=0)
    arrival, _ = bolus_arrival(mean)
    s0 = voxels[:, : arrival].mean(axis=1, keepdims=True)
    if modality == "dce":
        return voxels - s0, arrival
    safe = np.maximum(voxels, 1e-6)
    return -np.log(safe / np.maximum(s0, 1e-6)), arrival


def _pick_curve(curves: np.ndarray, order: np.ndarray) -> np.ndarray:
    return curves[order[:_CURVE_VOXELS]].mean(axis=0)


def arterial_and_venous_curves(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    peak = curves.max(axis=1)
    ttp = curves.argmax(axis=1)
    top = np.nonzero(peak >= np.quantile(peak, 0.99))[0]
    arterial_order = top[np.lexsort((-peak[top], ttp[top]))]
    arterial = _pick_curve(curves, arterial_order)
    a_peak = int(arterial.argmax())
    late = np.nonzero(ttp >= a_peak + 2)[0]
    if late.size == 0:
        raise InputValidationError("no venous outflow found: nothing peaks after the arterial peak")
    area = curves[late].sum(axis=1)
    venous = _pick_curve(curves, late[np.argsort(-area)])
    return arterial, venous


def phase_windows(arterial: np.ndarray, venous: np.ndarray, arrival: int) -> PhaseWindows:
    t = len(arterial)
    a_peak = max(int(arterial.argmax()), arrival)
    v_peak = max(int(venous.argmax()), a_peak + 2)
    v_peak = min(v_peak, t - 3)
    below = np.nonzero(venous[v_peak + 1:] < 0.5 * venous[v_peak])[0]
    washout = v_peak + 1 + int(below[0]) if below.size else t - 2
    washout = int(np.clip(washout, v_peak + 1, t - 2))
    mid = (a_peak + v_peak) // 2
    mid = int(np.clip(mid, a_peak + 1, v_peak - 1)) if v_peak - a_peak >= 2 else a_peak + 1
    late_len = max(1, washout - v_peak)
    bounds = (
        (arrival, a_peak + 1),
        (a_peak + 1, mid + 1),
        (mid + 1, v_peak + 1),
        (v_peak + 1, washout + 1),
        (washout + 1, min(t, washout + 1 + late_len)),
    )
    return PhaseWindows(arrival, a_peak, v_peak, washout, tuple((int(a), int(max(b, a + 1))) for a, b in bounds))


def normalize_phase(values: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values, [1, 99])
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip(2.0 * (values - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def collateral_maps(series: np.ndarray, modality: Modality = "dce", mask: np.ndarray | None = None) -> CollateralMaps:
    """Five phase maps of a 4D (x, y, z, t) series; every rule is in docs/conventional-map.md."""
    series = np.asarray(series)
    if series.ndim != 4:
        raise InputValidationError(f"a perfusion series must be 4D (x, y, z, t), got {series.ndim}D {series.shape}")
    if series.shape[-1] < MIN_FRAMES:
        raise InputValidationError(f"too few frames: {series.shape[-1]} (at least {MIN_FRAMES} are needed)")
    if not np.all(np.isfinite(series)):
        raise InputValidationError("the series contains NaN or infinite values")
    if modality not in ("dce", "dsc"):
        raise InputValidationError(f"unknown modality {modality!r} (dce or dsc)")
    if mask is None:
        mask = brain_mask(series)
    curves, arrival = contrast_curves(series, mask, modality)
    arterial, venous = arterial_and_venous_curves(curves)
    windows = phase_windows(arterial, venous, arrival)
    maps = np.full(mask.shape + (len(PHASE_NAMES),), -1.0, dtype=np.float32)
    for p, (start, stop) in enumerate(windows.bounds):
        maps[mask, p] = normalize_phase(curves[:, start:stop].mean(axis=1))
    return CollateralMaps(maps, mask, windows, arterial.astype(np.float32), venous.astype(np.float32))

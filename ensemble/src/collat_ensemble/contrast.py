"""Is there a contrast bolus in this time series, and which way does it go?

A 4D series shaped like perfusion (an EPI time series of the head) is not always perfusion:
fMRI BOLD, ASL, a quality-assurance phantom and a diffusion series read as time all look the
same to the network, which would turn them into confident-looking collateral maps. The one
thing every perfusion series has is a bolus, so the series is refused without one, before the
network runs. The rule reads the mean signal of the brain (the mask of SPEC section 2) over
time, relative to its baseline:

* baseline: the median of the first ``max(3, frames // 10)`` frames. A median, because the
  first frame of an EPI series without dummy scans is bright (the magnetisation is not yet in
  its steady state) and must not set the baseline.
* change: the relative difference of a 3-frame moving average from the baseline (the average
  keeps a single noisy or moving frame from making a bolus).
* DCE (T1 shortening, the signal rises) when the largest rise is at least
  :data:`MIN_BOLUS_CHANGE` and larger than the largest dip; DSC (T2* susceptibility, the signal
  falls) when the largest dip is at least that and larger than the rise, and the signal
  recovers afterwards by at least :data:`MIN_DSC_RECOVERY` of the dip (a first pass goes by; a
  signal that only falls is saturation or drift, not a bolus).
* Why 5 %: the brain's mean signal moves by 1 % in real fMRI BOLD (measured on the Siemens XA30
  task series of the corpus) and by 11-16 % in the phantoms' DSC and DCE series; real DSC drops
  the whole-brain mean by 15-35 % at the peak, and DCE-MRA raises it through the vessels and the
  enhancing tissue. 5 % sits well above the BOLD swing and under every bolus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from collat_contract import metrics

MIN_BOLUS_CHANGE = 0.05
MIN_DSC_RECOVERY = 0.3

Contrast = Literal["DCE", "DSC"]


@dataclass(frozen=True)
class Bolus:
    kind: Contrast | None  # None: no bolus found
    signal_change: float  # the largest relative change of the brain's mean signal (negative for a dip)
    reason: str  # why there is no bolus; empty when there is one

    def as_dict(self) -> metrics.Contrast:
        return metrics.Contrast(kind=self.kind or "none", signal_change=round(self.signal_change, 4))


def _moving_average(curve: np.ndarray, width: int = 3) -> np.ndarray:
    if curve.size < width:
        return curve
    return np.convolve(curve, np.ones(width) / width, mode="valid")


def detect_bolus(series: np.ndarray, mask: np.ndarray) -> Bolus:
    """The bolus in ``series`` (x, y, z, t) inside ``mask`` (x, y, z), by the rules of the module's docstring."""
    curve = np.asarray(series)[np.asarray(mask, dtype=bool)].mean(axis=0, dtype=np.float64)
    frames = curve.size
    base = float(np.median(curve[:max(3, frames // 10)]))
    if not np.isfinite(base) or base <= 0:
        return Bolus(None, 0.0, "the brain has no signal in the first frames")
    change = _moving_average(curve) / base - 1.0
    rise, dip = float(change.max()), float(change.min())
    if rise >= MIN_BOLUS_CHANGE and rise >= -dip:
        return Bolus("DCE", rise, "")
    if -dip >= MIN_BOLUS_CHANGE:
        lowest = int(np.argmin(change))
        after = change[lowest:]
        recovered = float(after.max() - dip) / -dip
        if recovered >= MIN_DSC_RECOVERY:
            return Bolus("DSC", dip, "")
        return Bolus(None, dip, f"the brain's signal falls by {-dip:.0%} and does not recover (it recovers "
                                f"{recovered:.0%} of the dip, a first pass recovers >= {MIN_DSC_RECOVERY:.0%}): "
                                "saturation or drift, not a contrast bolus")
    largest = rise if rise >= -dip else dip
    return Bolus(None, largest, f"no contrast bolus: the brain's mean signal changes by at most {abs(largest):.1%} "
                                f"(a bolus changes it by >= {MIN_BOLUS_CHANGE:.0%}); fMRI BOLD, ASL or a phantom "
                                "series is not perfusion")


# DSC -> the enhancement curve 3D-MROD-Net reads. Delta R2* = -ln(S / S0) / TE is proportional to the agent's
# concentration (TE is not known to the server and need not be: only the product with TE appears below), and a DCE
# series shows S0 (1 + k C). The ratio k_DCE / (r2* TE) = 1.5 / 1.2 is the phantom's physics (SPEC section 6:
# T1 relaxivity effect 1.5 /mM, T2* 40 /(s mM) at TE 30 ms); the network's min-max input scaling removes any other
# global scale, so only this baseline-to-enhancement balance is fixed by it.
DSC_TO_DCE_GAIN = 1.25
_FLOOR = 1e-3  # of the baseline: a voxel that loses all signal (an artery at the peak) is capped, not infinite
# How a DSC series becomes that signal is versioned, because weights read only the version they were trained on
# (their model card's ``dsc_conversion``; a card from before the field means version 1), and the server applies the
# served weights' version. Version 1 scales each voxel's Delta R2* by its own baseline, S0 (1 + gain Delta R2* TE):
# the enhancement of DCE, whose reference maps (SPEC section 5) are means of S - S0 = S0 k C. But the DSC reference
# maps are means of Delta R2*, without S0, so weights trained on both learned the DCE reference. Version 2 keeps each
# voxel's baseline and adds the enhancement on one reference baseline for the whole brain, S0 + S_ref gain Delta R2*
# TE: its S - S0 is Delta R2* to one scale, so the DCE rule applied to it gives the DSC reference. The measurements
# behind this: docs/training.md ("Why DSC was short").
DSC_CONVERSIONS = ("1", "2")
DSC_CONVERSION = "2"  # what training uses now


def baseline_frames(frames: int) -> int:
    """How many leading frames make the pre-bolus baseline (the rule of :func:`detect_bolus`)."""
    return max(3, frames // 10)


def check_dsc_conversion(version: str) -> str:
    if version not in DSC_CONVERSIONS:
        raise ValueError(f"unknown DSC conversion version {version!r} (this server knows {', '.join(DSC_CONVERSIONS)})")
    return version


def trained_dsc_conversion(record: dict) -> str:
    """The DSC conversion weights read, from their training record (model card ``training``, the checkpoint's
    training dict, or ``model.json``): the version it records; version 1 for weights trained on DSC before the
    field; the current one for weights that saw no DSC (they get no grade on DSC either way). An unknown version
    raises."""
    if "dsc_conversion" in record:
        return check_dsc_conversion(str(record["dsc_conversion"]))
    return "1" if "dsc" in (record.get("modalities") or []) else DSC_CONVERSION


def dsc_to_enhancement(series: np.ndarray, arrival: int | None = None, mask: np.ndarray | None = None,
                       version: str = DSC_CONVERSION) -> np.ndarray:
    """A DSC series (x, y, z, t) as the DCE-like signal the network reads: S0 + S_ref gain Delta R2* TE
    (``version`` "2") or S0 (1 + gain Delta R2* TE) ("1"); see :data:`DSC_CONVERSIONS`.

    S0 is each voxel's mean over the frames before ``arrival`` (the bolus arrival frame), or over the first
    :func:`baseline_frames` when it is not given; S_ref is the median S0 inside ``mask`` (the brain), or over the
    voxels with a tenth of the largest S0 when no mask is given.
    """
    check_dsc_conversion(version)
    series = np.asarray(series, dtype=np.float32)
    n = arrival if arrival is not None and arrival >= 2 else baseline_frames(series.shape[-1])
    s0 = series[..., :n].mean(axis=-1, keepdims=True)
    safe_s0 = np.maximum(s0, 1e-6)
    delta = -np.log(np.maximum(series, _FLOOR * safe_s0) / safe_s0)
    if version == "1":
        return (s0 * (1.0 + DSC_TO_DCE_GAIN * delta)).astype(np.float32)
    base = s0[..., 0]
    inside = np.asarray(mask, dtype=bool) if mask is not None else base > 0.1 * float(base.max())
    reference = float(np.median(base[inside])) if inside.any() else float(base.max())
    return (s0 + np.float32(reference * DSC_TO_DCE_GAIN) * delta).astype(np.float32)

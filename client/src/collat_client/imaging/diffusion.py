"""A multi-b-value diffusion series -> the b=1000-style trace image and, with a b=0 volume, the ADC.

Pure numpy. The trace is the geometric mean of the volumes at the highest b-value over their
directions (what scanners store as TRACEW, and what the U-Net was trained on: the geometric
mean cancels the fibre direction, an arithmetic mean would not). The ADC is
``-ln(S_b / S_0) / b`` in mm^2/s, with S_0 the mean of the volumes at b <= :data:`B0_MAX`
(Philips stores its b=0 as 0.001-0.004 s/mm^2), set to 0 where either signal is not positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collat_contract.clinical import DWI_B_VALUE_RANGE, b_value_in_range

from ..errors import QualityRefused

B0_MAX = 50.0  # s/mm^2: what counts as a b=0 volume
SAME_B = 0.05  # volumes within 5 % of the highest b-value belong to the trace
ADC_MAX = 5e-3  # mm^2/s: above free water at body temperature (3e-3), noise; clipped


@dataclass(frozen=True)
class DiffusionImages:
    trace: np.ndarray  # (x, y, z) float32
    b_value: float
    adc: np.ndarray | None  # mm^2/s; None without a b=0 volume
    directions: int


def combine(data: np.ndarray, b_values: tuple[float, ...] | list[float]) -> DiffusionImages:
    """``data`` (x, y, z, volumes) with one b-value per volume."""
    b = np.asarray(b_values, dtype=np.float64)
    if data.ndim != 4 or data.shape[3] != b.size:
        raise ValueError(f"{data.shape} volumes do not match {b.size} b-values")
    top = float(b.max())
    if top <= B0_MAX:
        raise ValueError(f"no diffusion-weighted volume: the highest b-value is {top:g} s/mm^2")
    weighted = np.abs(b - top) <= SAME_B * top
    signal = np.clip(data[..., weighted].astype(np.float64), 1e-6, None)
    trace = np.exp(np.log(signal).mean(axis=-1))
    adc = None
    if np.any(b <= B0_MAX):
        s0 = data[..., b <= B0_MAX].astype(np.float64).mean(axis=-1)
        valid = (s0 > 0) & (trace > 0)
        adc = np.zeros(trace.shape)
        adc[valid] = -np.log(trace[valid] / s0[valid]) / top
        adc = np.clip(adc, 0.0, ADC_MAX).astype(np.float32)
    return DiffusionImages(trace.astype(np.float32), top, adc, int(weighted.sum()))


def check_b_value(b_value: float | None, where: str, allow: bool) -> None:
    """Refuse a DWI outside the b-value range the U-Net was trained in, unless the caller allows it (the server then
    withholds its decisions)."""
    if b_value is None or allow or b_value_in_range(b_value):
        return
    lo, hi = DWI_B_VALUE_RANGE
    raise QualityRefused(f"{where}: the DWI's highest b-value is {b_value:g} s/mm^2, not {lo:g}-{hi:g} (the "
                         "network was trained on b=1000); use --allow-b-value to run it anyway, and its decisions will "
                         "be withheld")

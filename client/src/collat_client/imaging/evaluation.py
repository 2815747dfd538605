"""The studies' quality metrics, numpy only, so hospital tools can validate outputs without a DL stack.

Map metrics (per phase, inside a mask, as SPEC section 4 lists them): R^2 as the squared
Pearson correlation, mean absolute error, the Tanimoto measure and SSIM. Maps live in
[-1, 1]; Tanimoto and SSIM are computed on them shifted to [0, 1], the range of the study's
training targets (both are defined for non-negative intensities: SSIM's luminance term
breaks down where local means change sign). SSIM uses a 7x7x7 window (3D, Wang et al.
2004 constants, data range 1), averaged over the mask. Lesion metrics: Dice, AUC (Mann-Whitney, within a region such as
the ipsilateral hemisphere), volume difference and absolute volume difference in mL.
"""

from __future__ import annotations

import numpy as np

from collat_contract.names import PHASE_NAMES

SSIM_WINDOW = 7


def _pair(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if mask is None:
        return pred.ravel(), ref.ravel()
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pred.shape:
        raise ValueError(f"mask {mask.shape} does not match the maps {pred.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    return pred[mask], ref[mask]


def r2(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    p, r = _pair(pred, ref, mask)
    if p.std() == 0 or r.std() == 0:
        return 0.0
    return float(np.corrcoef(p, r)[0, 1] ** 2)


def mae(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    p, r = _pair(pred, ref, mask)
    return float(np.abs(p - r).mean())


def tanimoto(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    p, r = _pair(pred, ref, mask)
    p, r = (p + 1.0) / 2.0, (r + 1.0) / 2.0
    pr = float((p * r).sum())
    denom = float((p * p).sum() + (r * r).sum()) - pr
    return pr / denom if denom > 0 else 1.0


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size^3 window (edges: the part of the window inside the volume), via summed tables."""
    out = x
    for axis in range(x.ndim):
        c = np.cumsum(np.moveaxis(out, axis, 0), axis=0)
        c = np.concatenate([np.zeros((1,) + c.shape[1:]), c], axis=0)
        n = c.shape[0] - 1
        lo = np.clip(np.arange(n) - size // 2, 0, n)
        hi = np.clip(np.arange(n) + size // 2 + 1, 0, n)
        shape = (-1,) + (1,) * (c.ndim - 1)
        out = np.moveaxis((c[hi] - c[lo]) / (hi - lo).reshape(shape), 0, axis)
    return out


def ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0,
         window: int = SSIM_WINDOW) -> float:
    """Mean 3D SSIM over the mask (the whole volume without one); intensities must be non-negative."""
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"prediction {x.shape} and reference {y.shape} differ in shape")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _box_mean(x, window), _box_mean(y, window)
    vx = _box_mean(x * x, window) - mx * mx
    vy = _box_mean(y * y, window) - my * my
    cov = _box_mean(x * y, window) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if mask is None:
        return float(s.mean())
    return float(s[np.asarray(mask, dtype=bool)].mean())


def phase_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-phase R^2, MAE, Tanimoto and SSIM of (x, y, z, 5) maps, plus their mean over the phases."""
    if pred.shape[-1] != len(PHASE_NAMES) or ref.shape != pred.shape:
        raise ValueError(f"expected two (..., 5) map stacks of one shape, got {pred.shape} and {ref.shape}")
    table: dict[str, dict[str, float]] = {}
    for k, name in enumerate(PHASE_NAMES):
        p, r = pred[..., k], ref[..., k]
        table[name] = {"r2": r2(p, r, mask), "mae": mae(p, r, mask), "tanimoto": tanimoto(p, r, mask),
                       "ssim": ssim((p + 1.0) / 2.0, (r + 1.0) / 2.0, mask)}
    table["mean"] = {m: float(np.mean([table[n][m] for n in PHASE_NAMES])) for m in ("r2", "mae", "tanimoto", "ssim")}
    return table


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction {p.shape} and reference {r.shape} differ in shape")
    total = int(p.sum() + r.sum())
    return 1.0 if total == 0 else 2.0 * int((p & r).sum()) / total


def auc(scores: np.ndarray, labels: np.ndarray, region: np.ndarray | None = None) -> float:
    """Area under the ROC curve by the Mann-Whitney U statistic (ties count half)."""
    s, lab = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if region is not None:
        region = np.asarray(region, dtype=bool)
        s, lab = s[region], lab[region]
    s, lab = s.ravel(), lab.ravel()
    n_pos, n_neg = int(lab.sum()), int((~lab).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[lab].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def volume_difference_ml(pred: np.ndarray, ref: np.ndarray, voxel_ml: float) -> tuple[float, float]:
    """(predicted - reference, |predicted - reference|) volumes in mL."""
    diff = (int(np.count_nonzero(pred)) - int(np.count_nonzero(ref))) * voxel_ml
    return float(diff), float(abs(diff))

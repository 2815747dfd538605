"""Orientation and resampling on voxel grids described by 4x4 affines (voxel -> world mm, RAS).

Arrays follow nibabel's order: spatial axes first (i, j, k), time last. Every map the
product returns must overlay its source image exactly, so each transform here has an
exact inverse: :func:`reorient_to_ras` is a permutation with flips (no interpolation)
undone by :func:`reorient_from_ras`, and :func:`resample` maps voxel centres through the
two affines, so resampling back onto the source grid samples the same world points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputValidationError


def check_affine(affine: np.ndarray, what: str = "affine") -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise InputValidationError(f"{what} must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputValidationError(f"{what} contains non-finite values")
    det = np.linalg.det(a[:3, :3])
    if not np.isfinite(det) or abs(det) < 1e-6:
        raise InputValidationError(f"{what} is singular (determinant {det:.3g}): the voxel grid has no volume")
    return a


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


@dataclass(frozen=True)
class Orientation:
    """How the stored axes map to RAS: ``axes[w]`` is the stored axis along world axis ``w``."""

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]


def ras_orientation(affine: np.ndarray) -> Orientation:
    """Closest RAS axis assignment; ties are impossible for a non-singular affine after the greedy pick."""
    rot = np.asarray(affine, dtype=np.float64)[:3, :3] / voxel_sizes(affine)
    axes = [-1, -1, -1]
    remaining = {0, 1, 2}
    # Assign the most clearly aligned pairs first, as nibabel's io_orientation does.
    for flat in np.argsort(-np.abs(rot), axis=None):
        world, stored = divmod(int(flat), 3)
        if axes[world] == -1 and stored in remaining:
            axes[world] = stored
            remaining.discard(stored)
    flips = tuple(bool(rot[w, axes[w]] < 0) for w in range(3))
    return Orientation((axes[0], axes[1], axes[2]), flips)  # type: ignore[arg-type]


def reorient_to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, Orientation]:
    """Permute and flip the spatial axes so the array runs left->right, posterior->anterior, inferior->superior.

    Coronal and sagittal acquisitions become axial here (DCE-MRA is acquired coronally).
    Returns the view, its affine and the orientation needed to undo it.
    """
    affine = check_affine(affine)
    o = ras_orientation(affine)
    shape = np.array(data.shape[:3])
    out = np.transpose(data, (*o.axes, *range(3, data.ndim)))
    new_affine = affine[:, list(o.axes) + [3]].copy()
    for w, flip in enumerate(o.flips):
        if flip:
            out = np.flip(out, axis=w)
            n = shape[o.axes[w]]
            new_affine[:, 3] += new_affine[:, w] * (n - 1)
            new_affine[:, w] *= -1
    return out, new_affine, o


def reorient_from_ras(data: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Exact inverse of :func:`reorient_to_ras` for an array on the RAS grid."""
    out = data
    for w, flip in enumerate(orientation.flips):
        if flip:
            out = np.flip(out, axis=w)
    inverse = np.argsort(orientation.axes)
    return np.ascontiguousarray(np.transpose(out, (*inverse, *range(3, data.ndim))))


def fit_grid(affine: np.ndarray, shape: tuple[int, int, int], new_shape: tuple[int, int, int]) -> np.ndarray:
    """Affine of a grid of ``new_shape`` voxels covering the same field of view as (affine, shape)."""
    scale = np.array(shape, dtype=np.float64) / np.array(new_shape, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = np.diag(scale)
    m[:3, 3] = 0.5 * scale - 0.5  # voxel centres: i_src = (i_dst + 0.5) * scale - 0.5
    return np.asarray(affine, dtype=np.float64) @ m


def resample(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, dst_shape: tuple[int, int, int],
             order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``data`` (3D, or 4D with time last) at the voxel centres of the destination grid."""
    m = np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(dst_affine, dtype=np.float64)
    matrix, offset = m[:3, :3], m[:3, 3]
    src = np.asarray(data, dtype=np.float32)
    if src.ndim == 3:
        return ndimage.affine_transform(src, matrix, offset, output_shape=tuple(dst_shape), order=order,
                                        mode="constant", cval=cval, prefilter=False)
    frames = [ndimage.affine_transform(src[..., t], matrix, offset, output_shape=tuple(dst_shape), order=order,
                                       mode="constant", cval=cval, prefilter=False) for t in range(src.shape[-1])]
    return np.stack(frames, axis=-1)


def resample_time(series: np.ndarray, dt_in: float, frames_out: int, dt_out: float) -> np.ndarray:
    """Linear interpolation of the time axis (last) onto ``frames_out`` frames ``dt_out`` apart.

    Frames after the end of the acquisition hold its last value: a short series is
    extended, never extrapolated.
    """
    t_in = np.arange(series.shape[-1]) * dt_in
    t_out = np.minimum(np.arange(frames_out) * dt_out, t_in[-1])
    idx = np.clip(np.searchsorted(t_in, t_out, side="right") - 1, 0, len(t_in) - 2)
    w = ((t_out - t_in[idx]) / dt_in).astype(np.float32)
    return series[..., idx] * (1.0 - w) + series[..., idx + 1] * w

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


def _linear_weights(n_in: int, n_out: int, scale: float, shift: float) -> np.ndarray:
    """(n_in, n_out) weights of 1-D linear interpolation at x = scale * j + shift; zero outside [0, n_in - 1]."""
    x = scale * np.arange(n_out) + shift
    inside = (x >= -1e-6) & (x <= n_in - 1 + 1e-6)
    x = np.clip(x, 0.0, n_in - 1)
    i0 = np.clip(np.floor(x).astype(int), 0, max(n_in - 2, 0))
    w = x - i0
    weights = np.zeros((n_in, n_out), dtype=np.float32)
    columns = np.arange(n_out)[inside]
    np.add.at(weights, (i0[inside], columns), (1.0 - w[inside]).astype(np.float32))
    if n_in > 1:
        np.add.at(weights, (i0[inside] + 1, columns), w[inside].astype(np.float32))
    return weights


def _interpolate_axis(data: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """``data`` with ``axis`` (n_in long) replaced by ``weights.T @`` it (n_out long), in C order.

    Written as a (batched) left product on the array viewed as (before, n_in, after), so no
    axis is ever moved: ``np.tensordot`` moves the contracted axis last, a transposing copy of
    the whole series that took three quarters of the preprocessing (py-spy on the served step).
    """
    shape = data.shape
    before, after = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis + 1:], dtype=np.int64))
    out = np.matmul(weights.T, np.ascontiguousarray(data).reshape(before, shape[axis], after))
    return out.reshape(shape[:axis] + (weights.shape[1],) + shape[axis + 1:])


def _separable_linear(src: np.ndarray, scales: np.ndarray, shifts: np.ndarray, dst_shape: tuple[int, int, int],
                      cval: float) -> np.ndarray:
    """Axis-aligned trilinear resampling as three small matrix products (extra trailing axes ride along)."""
    out = src
    inside = np.ones((), dtype=np.float32)
    for axis in range(3):
        if src.shape[axis] == dst_shape[axis] and abs(scales[axis] - 1.0) < 1e-9 and abs(shifts[axis]) < 1e-9:
            continue  # this axis is already on the destination grid
        weights = _linear_weights(src.shape[axis], dst_shape[axis], float(scales[axis]), float(shifts[axis]))
        out = _interpolate_axis(out, weights, axis)
        shape = [1] * 3
        shape[axis] = dst_shape[axis]
        inside = inside * weights.sum(axis=0).reshape(shape)
    if cval != 0.0:
        outside = (1.0 - inside).reshape(inside.shape + (1,) * (out.ndim - 3))
        out = out + np.float32(cval) * outside
    return np.ascontiguousarray(out, dtype=np.float32)


def resample(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, dst_shape: tuple[int, int, int],
             order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``data`` (3D, or 4D with time last) at the voxel centres of the destination grid.

    When the two grids share their axes (the usual case after reorienting to RAS: only
    scaling and shift differ), linear interpolation is separable and runs as three small
    matrix products over all frames at once: ten times faster than a general affine
    resampling frame by frame, with the same values (up to float rounding).
    """
    m = np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(dst_affine, dtype=np.float64)
    matrix, offset = m[:3, :3], m[:3, 3]
    src = np.asarray(data, dtype=np.float32)
    if order == 1 and np.allclose(matrix - np.diag(np.diag(matrix)), 0.0, atol=1e-9):
        return _separable_linear(src, np.diag(matrix), offset, tuple(dst_shape), cval)
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
    # As one matrix product (frames_in x frames_out weights): BLAS instead of gathers over the last axis.
    weights = np.zeros((series.shape[-1], frames_out), dtype=np.float32)
    columns = np.arange(frames_out)
    np.add.at(weights, (idx, columns), 1.0 - w)
    np.add.at(weights, (idx + 1, columns), w)
    flat = np.asarray(series, dtype=np.float32).reshape(-1, series.shape[-1])
    return (flat @ weights).reshape(series.shape[:-1] + (frames_out,))

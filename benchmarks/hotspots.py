"""The hot spots py-spy found outside the networks, each timed before and after its fix in the same run.

"Before" is the straightforward code a first version writes (and ours did); "after" is what
ships. Both run on the same phantom series, one after the other, median of a few repeats, and
must give the same values: a speed-up that changed the numbers would not count.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np

from collat_client.imaging.volumes import load_nifti, row_major_float32
from collat_client.sdk.transport.kserve import HEADER_LENGTH, encode_request
from collat_ensemble import geometry
from collat_ensemble.phases import brain_mask
from collat_ensemble.preprocess import INPUT_HIGH, INPUT_LOW, MNI_2MM_AFFINE, prepare_perfusion, scale_to_network
from collat_ensemble.registration import _inside_fov


def _median_s(fn: Callable[[], object], repeats: int = 3) -> tuple[float, object]:
    result = fn()  # warm-up, and the value compared between before and after
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _tensordot_axis(data: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """The first version: contract with tensordot (which moves the axis last), then move it back."""
    return np.moveaxis(np.tensordot(data, weights, axes=([axis], [0])), -1, axis)


def _prepare_with(interpolate: Callable, series: np.ndarray, affine: np.ndarray) -> np.ndarray:
    shipped = geometry._interpolate_axis
    geometry._interpolate_axis = interpolate
    try:
        return prepare_perfusion(series, affine, 1.6, frames=60, frame_interval=1.6, slices=12, height=64,
                                 width=64).network_input
    finally:
        geometry._interpolate_axis = shipped


def _scale_whole_series(on_grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first version: scale the whole series, then reverse its four axes in one copy."""
    lo, hi = float(on_grid[mask].min()), float(on_grid[mask].max())
    scaled = np.full(on_grid.shape, INPUT_LOW, dtype=np.float32)
    if hi > lo:
        scaled[mask] = INPUT_LOW + (INPUT_HIGH - INPUT_LOW) * (on_grid[mask] - lo) / (hi - lo)
    return np.ascontiguousarray(np.transpose(scaled, (3, 2, 1, 0)))


def _sums_via_float64_copy(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first version of the brain mask's temporal sum and the bolus curve: a float64 copy of the series each."""
    total = np.asarray(series, dtype=np.float64).sum(axis=-1)
    curve = np.asarray(series, dtype=np.float64)[mask].mean(axis=0)
    return np.concatenate([total.ravel(), curve])


def _sums_accumulated_in_float64(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.concatenate([series.sum(axis=-1, dtype=np.float64).ravel(), series[mask].mean(axis=0, dtype=np.float64)])


def _fov_from_index_arrays(shape: tuple[int, ...], image_to_mni: np.ndarray, grid_affine: np.ndarray,
                           grid_shape: tuple[int, ...]) -> np.ndarray:
    """The first version of the field-of-view test: every grid index as a (3, N) float64 array, mapped by matrices."""
    index = np.indices(tuple(grid_shape), dtype=np.float64).reshape(3, -1)
    native = np.linalg.inv(image_to_mni[:3, :3]) @ (grid_affine[:3, :3] @ index + grid_affine[:3, 3:4]
                                                     - image_to_mni[:3, 3:4])
    extent = np.array(shape[:3], dtype=np.float64)[:, None]
    return np.all((native >= -0.5) & (native <= extent - 0.5), axis=0).reshape(grid_shape)


def upload(http_url: str, perfusion: Path) -> dict:
    """The series' upload as one bytes object vs streamed 1 MiB views. The request names only PERFUSION,
    so tritonserver refuses it once the whole body is in ("expected 8 inputs"): upload and parsing only."""
    body = encode_request({"PERFUSION": row_major_float32(load_nifti(perfusion)[0])}, [])
    headers = {HEADER_LENGTH: str(body.header_length), "Content-Length": str(body.nbytes),
               "Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=f"http://{http_url}", timeout=300) as client:
        def post(content: object) -> int:
            return client.post("/v2/models/stroke_triage/infer", content=content, headers=headers).status_code

        whole = body.tobytes()
        before_s, before = _median_s(lambda: post(whole), repeats=5)
        after_s, after = _median_s(lambda: post(body.chunks()), repeats=5)
    return {"hot_spot": f"upload {body.nbytes / 2**20:.0f} MiB (one bytes object -> streamed 1 MiB views)",
            "where": "client -> tritonserver", "before_s": before_s, "after_s": after_s,
            "speedup": before_s / after_s, "same_values": before == after == 400}


def measure(perfusion: Path) -> list[dict]:
    """-> rows: hot spot, where it runs, before s, after s, identical values."""
    rows = []

    def row(name: str, where: str, before: Callable[[], np.ndarray], after: Callable[[], np.ndarray],
            atol: float = 0.0) -> None:
        before_s, a = _median_s(before)
        after_s, b = _median_s(after)
        same = bool(np.allclose(a, b, rtol=1e-5, atol=atol)) if atol else bool(np.array_equal(a, b))
        rows.append({"hot_spot": name, "where": where, "before_s": before_s, "after_s": after_s,
                     "speedup": before_s / after_s, "same_values": same})

    row("inflate the .nii.gz (nibabel's GzipFile stream -> one ISA-L call)", "client",
        lambda: np.asanyarray(nib.load(str(perfusion)).dataobj), lambda: load_nifti(perfusion)[0])
    stored = load_nifti(perfusion)[0]
    row("column-major series -> row-major FP32 (one numpy pass -> per-slice copies on 2 threads)", "client",
        lambda: np.ascontiguousarray(stored, dtype=np.float32), lambda: row_major_float32(stored))
    series = row_major_float32(stored)
    affine = nib.load(str(perfusion)).affine
    row("separable resampling onto the network grid (tensordot -> batched left product)", "preprocess step",
        lambda: _prepare_with(_tensordot_axis, series, affine),
        lambda: _prepare_with(geometry._interpolate_axis, series, affine), atol=1e-5)
    mask = brain_mask(series)
    row("brain mask and bolus curve (a float64 copy of the series -> float64 accumulation)", "preprocess step",
        lambda: _sums_via_float64_copy(series, mask), lambda: _sums_accumulated_in_float64(series, mask))
    row("network input scaling and axis reversal (whole series -> slice by slice)", "preprocess step",
        lambda: _scale_whole_series(series, mask), lambda: scale_to_network(series, mask))
    # Which voxels of the 2 mm MNI grid (the template coverage) a 1 x 1 x 5 mm scan covers, in its native pose.
    pose = np.diag([1.0, 1.0, 5.0, 1.0])
    pose[:3, 3] = [-100.0, -120.0, -50.0]
    grid_shape = (91, 109, 91)
    row("template coverage test ((3, N) index arrays -> broadcast 1D terms)", "both preprocess steps",
        lambda: _fov_from_index_arrays((200, 230, 30), pose, MNI_2MM_AFFINE, grid_shape),
        lambda: _inside_fov((200, 230, 30), pose, MNI_2MM_AFFINE, grid_shape, margin=0.0))
    return rows

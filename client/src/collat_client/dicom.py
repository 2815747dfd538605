"""A DICOM series directory -> voxels (x, y, z[, t]) + RAS affine + frame interval, read with pydicom.

Refuses, naming the directory: no DICOM files, mixed series, slices of different
orientation or size, a gap in the slice positions (a missing slice), frames with different
slice sets. Patient tags are never read into anything that leaves this module.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import InputFileError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _seconds(value: str) -> float | None:
    """DICOM TM (HHMMSS.ffffff) -> seconds since midnight."""
    text = str(value or "").strip()
    if len(text) < 6:
        return None
    try:
        return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])
    except ValueError:
        return None


def _datasets(folder: Path) -> list:
    import pydicom
    from pydicom.errors import InvalidDicomError

    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(str(path))
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "PixelData" in ds:
            found.append(ds)
    return found


def read_series(folder: Path | str) -> tuple[np.ndarray, np.ndarray, float | None]:
    folder = Path(folder)
    datasets = _datasets(folder)
    if not datasets:
        raise InputFileError(f"{folder}: no DICOM images in this directory")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise InputFileError(f"{folder}: mixed series ({len(series)} SeriesInstanceUIDs); "
                             "give one series per directory")
    try:
        iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
        rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
        spacing = [float(v) for v in datasets[0].PixelSpacing]
    except (AttributeError, ValueError, TypeError):
        raise InputFileError(f"{folder}: images lack orientation, size or pixel spacing") from None
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    frames: dict[float, list] = defaultdict(list)
    for ds in datasets:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-4) or \
                (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputFileError(f"{folder}: images differ in orientation or size")
        key = ds.get("TemporalPositionIdentifier")
        if key is None:
            key = _seconds(ds.get("AcquisitionTime", "")) or 0.0
        frames[float(key)].append(ds)
    times = sorted(frames)
    stacks, positions_ref, frame_times = [], None, []
    for t in times:
        slices = sorted(frames[t], key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], normal)))
        positions = np.array([np.dot([float(v) for v in d.ImagePositionPatient], normal) for d in slices])
        if positions_ref is None:
            positions_ref = positions
            steps = np.diff(positions)
            if len(steps) and (np.any(steps <= 1e-3) or steps.max() > 1.5 * np.median(steps)):
                raise InputFileError(f"{folder}: slice positions are not evenly spaced (a missing or duplicate "
                                     f"slice): steps {np.round(steps, 2).tolist()[:8]} mm")
        elif positions.shape != positions_ref.shape or not np.allclose(positions, positions_ref, atol=1e-2):
            raise InputFileError(f"{folder}: frames hold different slice sets (a missing slice?)")
        volume = []
        for d in slices:
            pixels = d.pixel_array.astype(np.float32)
            pixels = pixels * float(d.get("RescaleSlope", 1.0)) + float(d.get("RescaleIntercept", 0.0))
            volume.append(pixels.T)  # (columns, rows): i runs along the row direction
        stacks.append(np.stack(volume, axis=-1))
        frame_times.append(_seconds(slices[0].get("AcquisitionTime", "")))
    # Every frame holds the same positions, so the last frame's slices give the geometry.
    ipp = [np.array([float(v) for v in d.ImagePositionPatient]) for d in slices]
    n = len(ipp)
    slice_vec = (ipp[-1] - ipp[0]) / (n - 1) if n > 1 else normal * float(datasets[0].get("SliceThickness", 1.0))
    origin = ipp[0]
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]
    lps[:3, 1] = col_dir * spacing[0]
    lps[:3, 2] = slice_vec
    lps[:3, 3] = origin
    data = stacks[0] if len(stacks) == 1 else np.stack(stacks, axis=-1)
    dt = None
    known = [t for t in frame_times if t is not None]
    if len(stacks) > 1 and len(known) == len(stacks):
        diffs = np.diff(known)
        if np.all(diffs > 0):
            dt = float(np.median(diffs))
    return data, LPS_TO_RAS @ lps, dt

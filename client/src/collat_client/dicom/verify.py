"""A spot check of the converter: slices decoded by pydicom must sit in the converted volume where its own
position says, with the same values.

Why: dcm2niix is the reference, but the reference has defects too, and two were found here while testing
(dcm2niix v1.0.20260724, RLE-compressed Enhanced MR files): a file whose slice normal runs against its stacking
order converts with the affine reordered and the voxels not (a brain mirrored through its slices), and a file
converted from a folder tree that holds other enhanced series came out as unrelated voxels, where the same file
converted on its own is right. No check of the affine alone can see either. A few decoded slices per series
catch them in milliseconds: a series whose slices came out reversed is put back in order, one that fails
otherwise is converted again on its own (see ``collat_client.dicom.study``), and one that still fails is refused,
never used.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .convert import ConvertedImage
from .headers import planes

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _slices(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]]:
    """(pixels scaled, position, orientation, spacing) of every slice in ``path``; empty when pydicom cannot decode
    it (a missing codec plugin): the check is then skipped and the conversion stands."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception:  # a codec plugin missing, or a file pydicom cannot read: no spot check
        return []
    frames = planes(ds)
    if not frames or any(f.spacing is None for f in frames):
        return []
    if "PerFrameFunctionalGroupsSequence" in ds:  # the rescale of each frame, else the shared one
        shared = (ds.get("SharedFunctionalGroupsSequence") or [{}])[0]
        scalings = []
        for frame in ds.PerFrameFunctionalGroupsSequence:
            transform = frame.get("PixelValueTransformationSequence") or shared.get("PixelValueTransformationSequence")
            scalings.append(transform[0] if transform else {})
    else:
        scalings = [ds]
    stack = pixels if pixels.ndim == 3 and "PerFrameFunctionalGroupsSequence" in ds else pixels[None]
    return [(values.astype(np.float64) * float(t.get("RescaleSlope", 1.0)) + float(t.get("RescaleIntercept", 0.0)),
             f.position, f.orientation, f.spacing) for values, t, f in zip(stack, scalings, frames, strict=False)]


def slice_voxels(rows: int, cols: int, position: np.ndarray, orientation: np.ndarray, spacing: list[float],
                 affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Voxel indices (3, rows * cols, row-major over the slice's pixels) of a DICOM slice in a volume with the RAS
    ``affine`` and ``shape``; None when the slice's pixels are not the volume's voxel centres."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    lps = np.asarray(position, float)[:, None] + np.outer(orientation[:3], c.ravel() * spacing[1]) \
        + np.outer(orientation[3:], r.ravel() * spacing[0])
    ras = LPS_TO_RAS[:3, :3] @ lps
    index = np.linalg.inv(affine) @ np.vstack([ras, np.ones(ras.shape[1])])
    ijk = np.rint(index[:3]).astype(int)
    if np.abs(index[:3] - ijk).max() > 0.05 or any((ijk[a] < 0).any() or (ijk[a] >= shape[a]).any()
                                                   for a in range(3)):
        return None
    return ijk


def _holds(data: np.ndarray, affine: np.ndarray, values: np.ndarray, position: np.ndarray,
           orientation: np.ndarray, spacing: list[float], free_scale: bool = False) -> str | None:
    """Why ``data`` (with ``affine``) does not hold this slice where its position puts it, or None."""
    ijk = slice_voxels(*values.shape, position, np.asarray(orientation, float), spacing, affine, data.shape[:3])
    if ijk is None:
        return "the converted affine does not hold the DICOM slice positions"
    volumes = data if data.ndim == 4 else data[..., None]
    expected = values.ravel()
    for t in range(volumes.shape[3]):  # the file's volume is not known (Philips scrambles the order): any one
        found = volumes[ijk[0], ijk[1], ijk[2], t].astype(np.float64)
        # Philips: up to one positive factor, since dcm2niix applies Philips' floating-point scale where pydicom
        # applies the display rescale (both linear in the stored values). Every other vendor: the values themselves.
        scale = float(found @ expected) / max(float(expected @ expected), 1e-12) if free_scale else 1.0
        if scale > 0 and np.abs(found - scale * expected).max() <= 1e-3 * max(1e-6, float(np.abs(found).max())):
            return None
    return "the converter put other values where the DICOM positions place a slice"


def _informative(files: list[Path], wanted: int = 3) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]]:
    """Up to ``wanted`` slices that vary (a uniform slice, such as air above the head, cannot tell one place from
    another), taken across the series: the first, middle and last files, every frame of an enhanced file."""
    ordered = sorted(files)
    picks = list(dict.fromkeys([0, len(ordered) // 2, len(ordered) - 1, *range(min(len(ordered), 8))]))
    found = []
    for i in picks:
        for item in _slices(ordered[i]):
            if float(np.ptp(item[0])) > 0:
                found.append(item)
        varied = [found[j] for j in np.linspace(0, len(found) - 1, min(wanted, len(found))).astype(int)] \
            if found else []
        if len(found) >= wanted:
            return varied
    return found


def check_conversion(image: ConvertedImage, files: list[Path],
                     free_scale: bool = False) -> tuple[ConvertedImage | None, str]:
    """The converted ``image`` if it holds its DICOM slices where their positions put them; repaired when its slices
    came out in reverse order (the defect above), with a note; None and the reason when neither holds. Mosaics
    and undecodable files are passed unchecked (an empty note)."""
    if "MOSAIC" in image.image_type or not files:
        return image, ""
    slices = _informative(files)
    problems = [p for s in slices if (p := _holds(image.data, image.affine, *s, free_scale=free_scale))]
    if not problems:
        return image, ""
    flipped = np.ascontiguousarray(image.data[:, :, ::-1])
    if all(_holds(flipped, image.affine, *s, free_scale=free_scale) is None for s in slices):
        return replace(image, data=flipped), ("slices put back in the order of their DICOM positions (the converter "
                                              "reversed them without their pixels)")
    return None, f"{problems[0]} (checked against {len(slices)} decoded slices); not used"

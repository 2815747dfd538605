"""The lesion and the ADC core as a DICOM Segmentation on the DWI's own frames, for PACS viewers.

Built with highdicom (the ``dicom`` extra). The masks come from the server on the DWI's grid (the grid
dcm2niix made from the series); each source frame's pixels are found on that grid through their own
position, orientation and spacing, so the SEG frames are the NIfTI masks, voxel for voxel, in the
scanner's frame order. The SEG references the source instances and carries their patient and study
identity (highdicom copies it from them): that identity never left this machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from collat_contract.clinical import CORE_LABEL

from ..errors import InvalidInput
from .headers import planes
from .verify import slice_voxels

SEGMENT_LABELS = ("hypoperfusion lesion", CORE_LABEL)


def _frames(files: tuple[Path, ...]):
    """(source datasets, per-frame (position, orientation, spacing, rows, cols)) for one volume of the series."""
    import pydicom

    datasets = sorted((pydicom.dcmread(str(f), stop_before_pixels=True) for f in files),
                      key=lambda d: int(d.get("InstanceNumber", 0) or 0))
    if any("MOSAIC" in [str(v).upper() for v in d.get("ImageType", [])] for d in datasets):
        raise InvalidInput("no SEG for a Siemens mosaic DWI: its instances tile every slice into one image, so there "
                           "are no per-slice frames to segment (export the DWI unmosaicked from the scanner)")
    enhanced = [d for d in datasets if "PerFrameFunctionalGroupsSequence" in d]
    if enhanced:
        sources = enhanced[:1]  # one file of an enhanced series covers every slice position
    else:
        seen: set[tuple[float, ...]] = set()
        sources = []
        for d in datasets:  # one instance per slice position: the first volume of a multi-volume series
            if not planes(d):  # not a placed image (Philips keeps such objects in the series)
                continue
            key = tuple(round(float(v), 2) for v in d.ImagePositionPatient)
            if key not in seen:
                seen.add(key)
                sources.append(d)
    frames = [(p.position, p.orientation, p.spacing, int(d.Rows), int(d.Columns)) for d in sources for p in planes(d)]
    return sources, frames


def masks_on_frames(masks: list[np.ndarray], affine: np.ndarray, frames) -> np.ndarray:
    """(frames, rows, cols, segments) uint8 of ``masks`` (on the grid of ``affine``) at each frame's pixels."""
    shape = masks[0].shape
    out = []
    for position, orientation, spacing, rows, cols in frames:
        ijk = slice_voxels(rows, cols, position, orientation, spacing, affine, shape)
        if ijk is None:
            raise InvalidInput("a DWI frame does not lie on the grid of the results; no SEG can be made from it")
        out.append(np.stack([m[tuple(ijk)].reshape(rows, cols) for m in masks], axis=-1))
    return np.stack(out).astype(np.uint8)


def build_segmentation(lesion: np.ndarray | None, core: np.ndarray, affine: np.ndarray, files: tuple[Path, ...], *,
                       algorithm: str, version: str, checksum: str | None, research_only: bool):
    """(a binary DICOM SEG with the lesion (segment 1) and the core (segment 2) on the source frames, the source
    instances it references: a report tied to its segments must list them as evidence). ``lesion`` None: a
    withheld lesion, which is no finding and no segment; the core alone is segment 1."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not files:
        raise InvalidInput("DICOM output needs a DWI read from DICOM (its instances are what the SEG references)")
    sources, frames = _frames(files)
    segments = ([] if lesion is None else [(SEGMENT_LABELS[0], np.asarray(lesion, bool))]) + \
        [(SEGMENT_LABELS[1], np.asarray(core, bool))]
    pixels = masks_on_frames([mask for _, mask in segments], affine, frames)
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=version, family=codes.cid7162.ArtificialIntelligence,
        parameters={"model_sha256": checksum} if checksum else None)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification)
        for number, (label, _) in enumerate(segments, start=1)]
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="collat", manufacturer_model_name=algorithm,
        software_versions=version, device_serial_number="none", omit_empty_frames=False,
        content_qualification="RESEARCH" if research_only else "PRODUCT",
        series_description="collat: hypoperfusion lesion and ADC core" if lesion is not None else
        "collat: ADC core (hypoperfusion withheld)"), sources

"""The header walk: which files belong to which series, which are images, and what b-values they carry.

Only technical tags are read (``specific_tags``), so no identifier enters the process's memory
here; pixel data is never read (dcm2niix converts the images).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

# Tags read from every file, by keyword; nothing about the patient or the study's identity.
TECHNICAL_TAGS = ["SOPClassUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "ImageType",
                  "Manufacturer",
                  "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                  "DiffusionBValue", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
                  "NumberOfFrames", (0x0019, 0x0010), (0x0019, 0x100C), (0x0043, 0x0010), (0x0043, 0x1039),
                  (0x2001, 0x0010), (0x2001, 0x1003)]
MAX_DEPTH = 9  # folders below the one given; dcm2niix walks as deep


@dataclass
class SeriesHeader:
    uid: str
    number: int | None
    description: str
    modality: str
    image: bool  # holds pixel data (an image storage class), as opposed to SR, presentation states, documents
    kind: str  # the storage class's name, for what was ignored
    manufacturer: str = ""
    files: list[Path] = field(default_factory=list)
    b_values: set[float] = field(default_factory=set)  # from the standard tag and the vendors' private tags
    orientation: tuple[float, ...] | None = None
    positions: set[tuple[float, float, float]] = field(default_factory=set)  # every slice position, rounded

    def slice_gap(self) -> str | None:
        """Why the slice positions cannot make one evenly spaced volume (a missing slice), or None.

        dcm2niix converts such a series with a warning and a volume whose slice spacing is wrong for part of it;
        an image that does not overlay its scan must not reach a measurement, so the gap is found here."""
        if self.orientation is None or len(self.positions) < 3:
            return None
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        along = np.sort(np.array([np.dot(np.cross(row, col), p) for p in self.positions]))
        along = along[np.concatenate([[True], np.diff(along) > 1e-3])]
        if along.size < 3:
            return None
        steps = np.diff(along)
        if steps.max() > 1.5 * np.median(steps):
            gap = int(np.argmax(steps))
            return (f"slice positions are not evenly spaced: {steps[gap]:.2f} mm after slice {gap + 1} of "
                    f"{along.size} where the others are {np.median(steps):.2f} mm apart (a missing slice)")
        return None

    @property
    def label(self) -> str:
        number = "?" if self.number is None else str(self.number)
        return f"series {number} '{self.description}'" if self.description else f"series {number}"


def walk(folder: Path, depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Every regular file under ``folder`` down to ``depth`` levels, in a stable order; hidden names skipped."""
    entries = sorted(folder.iterdir())
    for path in entries:
        if path.name.startswith("."):
            continue
        if path.is_file():
            yield path
        elif path.is_dir() and depth > 0:
            yield from walk(path, depth - 1)


def _private(ds, group: int, creator_word: str, element: int):
    """A private element by its creator's name, in block 0x10 where the vendors put their diffusion tags (only
    that block's tags are read, see :data:`TECHNICAL_TAGS`)."""
    for block in (0x10,):
        creator = ds.get((group, block))
        if creator is None:
            continue
        if creator_word in str(creator.value).upper():
            item = ds.get((group, (block << 8) | element))
            return None if item is None else item.value
    return None


def _number(value) -> float | None:
    try:
        if isinstance(value, bytes):
            value = value.decode(errors="ignore").strip("\x00 ")
        if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, str):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def b_values(ds) -> set[float]:
    """b-values (s/mm^2) of one file: the standard tag (top level or the enhanced functional groups), Siemens
    (0019,xx0C), GE (0043,xx39, first value, less its 1e9 flag) and Philips (2001,xx03)."""
    found: set[float] = set()
    standard = _number(ds.get("DiffusionBValue"))
    if standard is not None:
        found.add(standard)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(groups, []) or []:
            for diffusion in item.get("MRDiffusionSequence", []) or []:
                b = _number(diffusion.get("DiffusionBValue"))
                if b is not None:
                    found.add(b)
    for group, word, element, adjust in ((0x0019, "SIEMENS", 0x0C, None), (0x0043, "GEMS", 0x39, 1e9),
                                         (0x2001, "PHILIPS", 0x03, None)):
        b = _number(_private(ds, group, word, element))
        if b is not None:
            found.add(b % adjust if adjust else b)
    return {b for b in found if 0 <= b < 1e5}


class Plane(NamedTuple):
    """Where one frame lies: its first pixel's position, row and column directions (LPS), row and column spacing."""

    position: np.ndarray
    orientation: np.ndarray
    spacing: list[float] | None


def planes(ds) -> list[Plane]:
    """The plane of every frame in a file: the top-level tags of a classic image, the functional groups (per frame,
    else shared) of an enhanced one; frames whose position or orientation is missing are left out."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        candidates = [(ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing"))]
    else:
        shared = (ds.get("SharedFunctionalGroupsSequence") or [{}])[0]

        def first(frame, sequence: str, keyword: str):
            item = frame.get(sequence) or shared.get(sequence)
            return item[0].get(keyword) if item else None

        candidates = [(first(f, "PlanePositionSequence", "ImagePositionPatient"),
                       first(f, "PlaneOrientationSequence", "ImageOrientationPatient"),
                       first(f, "PixelMeasuresSequence", "PixelSpacing"))
                      for f in ds.PerFrameFunctionalGroupsSequence]
    return [Plane(np.array(position, float), np.array(orientation, float),
                  None if spacing is None else [float(v) for v in spacing])
            for position, orientation, spacing in candidates
            if position is not None and orientation is not None and len(position) == 3 and len(orientation) == 6]


def scan_headers(folder: Path) -> dict[str, SeriesHeader]:
    """Series found under ``folder`` by SeriesInstanceUID (files that are not DICOM are passed over)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import UID

    series: dict[str, SeriesHeader] = {}
    for path in walk(folder):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=TECHNICAL_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        sop = UID(str(ds.get("SOPClassUID", "") or ""))
        if not uid:
            continue
        kind = sop.name if sop.is_valid else "unknown storage class"
        image = "Image Storage" in kind
        entry = series.get(uid)
        if entry is None:
            number = ds.get("SeriesNumber")
            entry = series[uid] = SeriesHeader(uid, None if number in (None, "") else int(number),
                                               str(ds.get("SeriesDescription", "") or ""),
                                               str(ds.get("Modality", "") or ""), image, kind,
                                               str(ds.get("Manufacturer", "") or ""))
        entry.files.append(path)
        entry.b_values |= b_values(ds)
        for plane in planes(ds):
            entry.orientation = entry.orientation or tuple(plane.orientation)
            entry.positions.add(tuple(round(float(v), 3) for v in plane.position))
    return series

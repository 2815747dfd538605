"""dcm2niix as the converter: one call per folder, its NIfTI and sidecars read back into memory.

Why dcm2niix and not a reader of our own: it is the field's reference converter, kept up with
every vendor's quirks (enhanced multi-frame, mosaic, Philips scaling, scrambled volume order,
b-values and vectors in private tags, compressed syntaxes), and its affines are what every
neuroimaging tool expects. It runs in a temporary folder that is removed afterwards, whatever
happens, so nothing half-written is left behind, and with ``-ba y`` so that its sidecars hold no
patient identifiers.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .headers import MAX_DEPTH

CONVERT_TIMEOUT_S = 600.0
# Output names: "<SeriesInstanceUID>_<SeriesNumber><suffix dcm2niix adds when it splits a series>".
_NAME = re.compile(r"^(?P<uid>[0-9.]+)_(?P<number>-?\d*)(?P<suffix>.*)$")


@dataclass(frozen=True)
class ConvertedImage:
    """One image dcm2niix made from a series (a series can give more than one: echoes, a split-off ADC)."""

    series_uid: str
    number: int | None
    suffix: str
    description: str
    image_type: tuple[str, ...]
    data: np.ndarray  # (x, y, z[, t]) float32
    affine: np.ndarray  # RAS
    b_values: tuple[float, ...] | None  # one per volume, from dcm2niix's .bval
    repetition_seconds: float | None

    @property
    def volumes(self) -> int:
        return 1 if self.data.ndim == 3 else int(self.data.shape[3])


def dcm2niix_binary() -> str:
    try:
        import dcm2niix
    except ImportError:
        raise InputFileError("reading DICOM needs the dcm2niix package (pip install dcm2niix)") from None
    return str(dcm2niix.bin)


def _read(nifti: Path) -> ConvertedImage | None:
    import nibabel as nib

    match = _NAME.match(nifti.name[: -len(".nii")])
    if match is None:
        return None
    sidecar_path = nifti.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    image = nib.load(str(nifti))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    bval_path = nifti.with_suffix(".bval")
    bvals = tuple(float(v) for v in bval_path.read_text().split()) if bval_path.exists() else None
    number = match["number"]
    tr = sidecar.get("RepetitionTime")
    return ConvertedImage(match["uid"], int(number) if number else None, match["suffix"].lstrip("_"),
                          str(sidecar.get("SeriesDescription", "")),
                          tuple(str(t).upper() for t in sidecar.get("ImageType", [])), data,
                          np.asarray(image.affine, dtype=np.float64), bvals,
                          float(tr) if isinstance(tr, (int, float)) and tr > 0 else None)


def convert_files(files: list[Path]) -> list[ConvertedImage]:
    """The images of exactly these files (one series), converted on their own: linked into an empty folder, so
    that nothing else in their folders can change how the converter groups or decodes them."""
    with tempfile.TemporaryDirectory(prefix="collat-series-") as tmp:
        for n, path in enumerate(files):
            (Path(tmp) / f"{n:06d}.dcm").symlink_to(Path(path).resolve())
        return convert_folder(Path(tmp))


def convert_folder(folder: Path) -> list[ConvertedImage]:
    """Every image series under ``folder`` (any depth up to :data:`~.headers.MAX_DEPTH`), converted."""
    with tempfile.TemporaryDirectory(prefix="collat-dicom-") as tmp:
        command = [dcm2niix_binary(), "-z", "n", "-b", "y", "-ba", "y", "-d", str(MAX_DEPTH),
                   "-f", "%j_%s", "-o", tmp, str(folder)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InputFileError(f"{folder}: DICOM conversion took longer than {CONVERT_TIMEOUT_S:.0f} s") from None
        images = [image for path in sorted(Path(tmp).glob("*.nii")) if (image := _read(path)) is not None]
    if not images:
        last = next((line for line in reversed(done.stdout.splitlines() + done.stderr.splitlines())
                     if line.strip()), "no output")
        raise InputFileError(f"{folder}: no DICOM image series could be converted (dcm2niix: {last.strip()})")
    return images

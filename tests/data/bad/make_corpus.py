"""Writes the corpus of bad inputs the CLI must refuse cleanly (generated, so no binaries live in git).

``python tests/data/bad/make_corpus.py OUT_DIR`` writes every case; the tests call
:func:`make_corpus` on a temporary folder. Each case is (name, CLI arguments, text the
one-line error must contain).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class BadCase:
    name: str
    args: list[str]
    message: str


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None, tr: float = 1.6) -> Path:
    image = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else np.eye(4))
    image.set_sform(np.diag([2.0, 2.0, 5.0, 1.0]) if affine is None else affine, code=1)
    image.set_qform(None, code=0)
    if np.asarray(data).ndim == 4:
        image.header.set_zooms(image.header.get_zooms()[:3] + (tr,))
    nib.save(image, str(path))
    return path


def _series(frames: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + 50 * rng.random((16, 16, 4, frames))).astype(np.float32)


def make_corpus(out: Path) -> list[BadCase]:
    out.mkdir(parents=True, exist_ok=True)
    cases: list[BadCase] = []

    def perfusion(name: str, path: Path, message: str) -> None:
        cases.append(BadCase(name, [str(path)], message))

    truncated = _nifti(out / "truncated.nii.gz", _series())
    truncated.write_bytes(truncated.read_bytes()[:400])
    perfusion("truncated .nii.gz", truncated, "not a readable NIfTI image")
    text = out / "text.nii"
    text.write_text("patient list, not an image\n")
    perfusion("text file named .nii", text, "not a readable NIfTI image")
    perfusion("3D where 4D is needed", _nifti(out / "volume3d.nii.gz", _series()[..., 0]), "must be 4D")
    perfusion("4D with 3 frames", _nifti(out / "frames3.nii.gz", _series(3)), "too few frames: 3")
    nan = _series()
    nan[3, 3, 1, 7] = np.nan
    perfusion("NaN voxels", _nifti(out / "nan.nii.gz", nan), "NaN or infinite")
    inf = _series()
    inf[2, 2, 2, 2] = np.inf
    perfusion("Inf voxels", _nifti(out / "inf.nii.gz", inf), "NaN or infinite")
    perfusion("all-zero series", _nifti(out / "zeros.nii.gz", np.zeros((16, 16, 4, 30), np.float32)), "constant")
    perfusion("singular affine", _nifti(out / "singular.nii.gz", _series(), np.diag([2.0, 2.0, 0.0, 1.0])),
              "singular")
    bad_affine = np.diag([2.0, 2.0, 5.0, 1.0])
    bad_affine[0, 3] = np.inf
    perfusion("non-finite affine", _nifti(out / "nonfinite.nii.gz", _series(), bad_affine), "non-finite")
    huge = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), np.eye(4))
    huge.header.set_data_shape((10_000, 10_000, 1, 30))
    huge_path = out / "huge.nii"
    huge.header.set_data_dtype(np.uint8)
    with open(huge_path, "wb") as f:  # header only: the file claims 3 G voxels, the reader must not try
        f.write(huge.header.binaryblock + b"\x00" * 4)
    perfusion("10,000 x 10,000 series", huge_path, "exceed the server's limit")

    dwi = _nifti(out / "dwi.nii.gz", np.ones((20, 20, 10), np.float32))
    adc_shape = _nifti(out / "adc_shape.nii.gz", np.ones((20, 20, 9), np.float32))
    adc_orient = _nifti(out / "adc_orient.nii.gz", np.ones((20, 20, 10), np.float32), np.diag([-2.0, 2.0, 5.0, 1.0]))
    common = ["--nihss", "10", "--side", "left"]
    cases.append(BadCase("DWI and ADC of different shapes", ["--dwi", str(dwi), "--adc", str(adc_shape), *common],
                         "do not share a grid"))
    cases.append(BadCase("DWI and ADC of different orientations",
                         ["--dwi", str(dwi), "--adc", str(adc_orient), *common], "different affines"))
    cases.append(BadCase("negative NIHSS", ["--dwi", str(dwi), "--adc", str(dwi), "--nihss", "-3"], "nihss"))
    cases.append(BadCase("unknown side", ["--dwi", str(dwi), "--adc", str(dwi), "--nihss", "3", "--side", "up"],
                         "side must be left, right, bilateral or unknown, got 'up'"))
    empty = out / "dicom_empty"
    empty.mkdir(exist_ok=True)
    cases.append(BadCase("empty DICOM directory", ["--dwi", str(empty), "--adc", str(empty), *common],
                         "no DICOM files in this folder or below it"))
    cases.append(BadCase("DICOM series with a missing slice",
                         ["--dwi", str(_dicom(out / "dicom_gap", skip=2)), "--adc", str(dwi), *common],
                         "a missing slice"))
    mixed = _dicom(out / "dicom_mixed", uid="1.2.1")
    _dicom(mixed, uid="1.2.2")
    cases.append(BadCase("DICOM series with mixed series UIDs",
                         ["--dwi", str(mixed), "--adc", str(dwi), *common], "choose one with --dwi-series"))
    return cases


def write_dicom_series(folder, volume, *, spacing=(2.0, 2.0, 5.0), frames=1, skip=None, uid="1.2.3.4"):
    """An axial series (x = columns, y = rows) with LPS positions; ``skip`` drops one slice index.

    Also used by the DICOM reader tests.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = volume.shape[:3]
    for t in range(frames):
        for k in range(nz):
            if k == skip:
                continue
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.SeriesInstanceUID = uid
            ds.PatientName = "Test^Patient"
            ds.Rows, ds.Columns = ny, nx
            ds.PixelSpacing = [spacing[1], spacing[0]]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, k * spacing[2]]
            ds.SliceThickness = spacing[2]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit, ds.PixelRepresentation = 15, 0
            ds.TemporalPositionIdentifier = t + 1
            ds.RepetitionTime = 1500.0  # ms: the frame interval of a dynamic series
            ds.InstanceNumber = t * nz + k + 1
            ds.AcquisitionTime = f"1200{t * 1.5:05.2f}".replace(" ", "0")
            frame = volume[..., k, t] if volume.ndim == 4 else volume[..., k]
            ds.PixelData = np.ascontiguousarray(frame.T.astype(np.uint16)).tobytes()
            ds.save_as(str(folder / f"{uid}_{t:03d}_{k:03d}.dcm"), enforce_file_format=True)
    return folder


def _dicom(folder: Path, *, skip: int | None = None, uid: str = "1.2.3") -> Path:
    volume = np.stack([np.full((8, 8), 100 + k, np.uint16) + np.arange(8, dtype=np.uint16) for k in range(5)], axis=-1)
    return write_dicom_series(folder, volume, skip=skip, uid=uid)


if __name__ == "__main__":
    for case in make_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "bad-corpus")):
        print(f"{case.name}: collat-client infer {' '.join(case.args)}")

"""Writes volumes as scanner-like DICOM series for the reader's tests: classic (one file per slice and frame),
enhanced multi-frame (one file), and either of them compressed (RLE lossless, JPEG 2000 lossless).

Geometry follows the standard: the RAS affine is turned into LPS; pixel (row r, column c) of slice k sits at
ImagePositionPatient_k + c * (row direction * column spacing) + r * (column direction * row spacing), and the
pixel array of slice k is ``data[:, :, k].T`` (columns run along the first voxel axis).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
DIRECTIONS = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])  # a volume's gradient, distinct per volume
TRACE = ("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW")
ADC_TYPE = ("DERIVED", "PRIMARY", "DIFFUSION", "ADC")


def _geometry(affine: np.ndarray) -> tuple[list[float], list[float], np.ndarray]:
    lps = LPS @ np.asarray(affine, dtype=np.float64)
    col_step, row_step = lps[:3, 0], lps[:3, 1]
    iop = [*(col_step / np.linalg.norm(col_step)), *(row_step / np.linalg.norm(row_step))]
    spacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
    return [round(float(v), 8) for v in iop], spacing, lps


def _base(sop_class: str, series_uid: str, number: int, description: str, image_type: list[str]) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
    ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
    ds.PatientName, ds.PatientID = "Phantom^Test", "PHANTOM-0001"
    ds.PatientBirthDate, ds.PatientSex = "19500101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261123", "120000", "1", "ACC-0001"
    ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.ImageType = image_type
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    return ds


def _encode(ds: Dataset, syntax: str | None) -> None:
    if syntax == "rle":
        ds.compress(RLELossless)
    elif syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless)


def write_classic(folder: Path, data: np.ndarray, affine: np.ndarray, *, number: int = 1, description: str = "",
                  image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M"), frame_seconds: float = 1.0,
                  b_values: list[float] | None = None, slope: float = 1.0, syntax: str | None = None,
                  series_uid: str | None = None) -> Path:
    """One file per slice and volume; ``data`` holds stored integers / ``slope`` (x, y, z[, volumes])."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    iop, spacing, lps = _geometry(affine)
    volumes = data if data.ndim == 4 else data[..., None]
    instance = 0
    for t in range(volumes.shape[3]):
        for k in range(volumes.shape[2]):
            instance += 1
            ds = _base(MR, uid, number, description, list(image_type))
            ds.InstanceNumber = instance
            ds.Rows, ds.Columns = volumes.shape[1], volumes.shape[0]
            ds.PixelSpacing, ds.SliceThickness = spacing, float(np.linalg.norm(lps[:3, 2]))
            ds.ImageOrientationPatient = iop
            ds.ImagePositionPatient = [round(float(v), 5) for v in (lps @ [0, 0, k, 1])[:3]]
            ds.RepetitionTime, ds.EchoTime = frame_seconds * 1000.0, 30.0
            ds.TemporalPositionIdentifier, ds.NumberOfTemporalPositions = t + 1, volumes.shape[3]
            seconds = 12 * 3600 + t * frame_seconds
            ds.AcquisitionTime = f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"
            ds.AcquisitionNumber = t + 1
            ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
            if b_values is not None:
                ds.DiffusionBValue = float(b_values[t])
                ds.DiffusionGradientOrientation = [0.0, 0.0, 0.0] if b_values[t] == 0 else DIRECTIONS[t % 3]
            ds.PixelData = np.ascontiguousarray(np.rint(volumes[:, :, k, t] / slope).T.astype(np.uint16)).tobytes()
            _encode(ds, syntax)
            ds.save_as(str(folder / f"IM{instance:05d}"), enforce_file_format=True)
    return folder


def write_enhanced(folder: Path, data: np.ndarray, affine: np.ndarray, *, number: int = 1, description: str = "",
                   image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NONE"), slope: float = 1.0,
                   b_values: list[float] | None = None, syntax: str | None = None) -> Path:
    """One Enhanced MR file holding every slice (and volume) as frames, geometry in the functional groups."""
    folder.mkdir(parents=True, exist_ok=True)
    iop, spacing, lps = _geometry(affine)
    volumes = data if data.ndim == 4 else data[..., None]
    ds = _base(ENHANCED_MR, generate_uid(), number, description, list(image_type))
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = volumes.shape[1], volumes.shape[0]
    ds.NumberOfFrames = volumes.shape[2] * volumes.shape[3]
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = spacing, float(np.linalg.norm(lps[:3, 2]))
    orientation.ImageOrientationPatient = iop
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, 0.0, "US"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, pixels = [], []
    for t in range(volumes.shape[3]):
        for k in range(volumes.shape[2]):
            position, content = Dataset(), Dataset()
            position.ImagePositionPatient = [round(float(v), 5) for v in (lps @ [0, 0, k, 1])[:3]]
            content.StackID, content.InStackPositionNumber = "1", k + 1
            content.TemporalPositionIndex = t + 1
            content.DimensionIndexValues = [t + 1, k + 1]
            frame = Dataset()
            frame.PlanePositionSequence = Sequence([position])
            frame.FrameContentSequence = Sequence([content])
            if b_values is not None:
                diffusion = Dataset()
                diffusion.DiffusionBValue = float(b_values[t])
                diffusion.DiffusionDirectionality = "NONE" if b_values[t] == 0 else "DIRECTIONAL"
                frame.MRDiffusionSequence = Sequence([diffusion])
            frames.append(frame)
            pixels.append(np.rint(volumes[:, :, k, t] / slope).T.astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(np.stack(pixels)).tobytes()
    _encode(ds, syntax)
    ds.save_as(str(folder / "ENHANCED.dcm"), enforce_file_format=True)
    return folder


def write_report(folder: Path, study_uid: str = "1.2.826.0.1.3680043.8.498.1") -> Path:
    """A non-image object (a Basic Text SR with no content) beside the images."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = _base("1.2.840.10008.5.1.4.1.1.88.11", generate_uid(), 900, "report", ["ORIGINAL"])
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "ImageType"):
        delattr(ds, keyword)
    ds.Modality = "SR"
    ds.save_as(str(folder / "REPORT.dcm"), enforce_file_format=True)
    return folder


def write_mosaic(folder: Path, data: np.ndarray, affine: np.ndarray, *, number: int = 1, description: str = "",
                 frame_seconds: float = 1.0, slope: float = 1.0, b_values: list[float] | None = None) -> Path:
    """Siemens mosaic: each volume one file, its slices tiled left to right, top to bottom, in a square grid.
    The position is that of the whole mosaic's top-left pixel (Siemens' convention, which readers undo);
    the slice count is in Siemens' private (0019,100A)."""
    folder.mkdir(parents=True, exist_ok=True)
    iop, spacing, lps = _geometry(affine)
    volumes = data if data.ndim == 4 else data[..., None]
    nx, ny, nz = volumes.shape[:3]
    tiles = int(np.ceil(np.sqrt(nz)))
    uid = generate_uid()
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    first = (lps @ [0, 0, 0, 1])[:3]
    corner = first - row_dir * spacing[1] * (tiles - 1) * nx / 2 - col_dir * spacing[0] * (tiles - 1) * ny / 2
    for t in range(volumes.shape[3]):
        ds = _base(MR, uid, number, description, ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"])
        ds.InstanceNumber = ds.AcquisitionNumber = t + 1
        ds.Rows, ds.Columns = tiles * ny, tiles * nx
        ds.PixelSpacing, ds.SliceThickness = spacing, float(np.linalg.norm(lps[:3, 2]))
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [round(float(v), 5) for v in corner]
        ds.RepetitionTime, ds.EchoTime = frame_seconds * 1000.0, 30.0
        seconds = 12 * 3600 + t * frame_seconds
        ds.AcquisitionTime = f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0A, "US", nz)
        if b_values is not None:
            block.add_new(0x0C, "IS", int(b_values[t]))
        mosaic = np.zeros((tiles * ny, tiles * nx), np.uint16)
        for k in range(nz):
            r, c = divmod(k, tiles)
            mosaic[r * ny:(r + 1) * ny, c * nx:(c + 1) * nx] = np.rint(volumes[:, :, k, t] / slope).T.astype(np.uint16)
        ds.PixelData = mosaic.tobytes()
        ds.save_as(str(folder / f"MOSAIC{t + 1:04d}"), enforce_file_format=True)
    return folder


def write_phantom_study(root, case, *, diffusion_writer, syntax, perfusion_writer=None):
    """The scanner's way: ADC as integers in 1e-6 mm^2/s, DWI and perfusion as scaled integers. ``mosaic``: the
    perfusion and the DWI as Siemens mosaics (b-value in Siemens' private tag), the ADC classic. The perfusion is
    classic (a file per slice and frame) unless ``perfusion_writer`` says (a mosaic: a file per frame)."""
    perfusion_writer = perfusion_writer or (write_mosaic if diffusion_writer == "mosaic" else write_classic)
    perfusion_writer(root / "perf", case.perfusion.astype(float), case.perfusion_affine, number=4,
                     description="ep2d_perf", frame_seconds=case.frame_seconds,
                     slope=float(case.perfusion.max()) / 60000.0)
    options = {} if syntax is None else {"syntax": syntax}
    if diffusion_writer == "mosaic":
        write_mosaic(root / "dwi" / "trace", case.dwi[..., None].astype(float), case.diffusion_affine, number=7,
                     description="ep2d_diff_TRACEW", b_values=[1000.0], slope=float(case.dwi.max()) / 60000.0)
        diffusion_writer = write_classic
    else:
        diffusion_writer(root / "dwi" / "trace", case.dwi[..., None].astype(float), case.diffusion_affine, number=7,
                         description="ep2d_diff_TRACEW", image_type=TRACE, b_values=[1000.0],
                         slope=float(case.dwi.max()) / 60000.0, **options)
    diffusion_writer(root / "dwi" / "adc", case.adc * 1e6, case.diffusion_affine, number=8,
                     description="ep2d_diff_ADC", image_type=ADC_TYPE, **options)
    write_enhanced(root / "t1", np.full((16, 16, 12), 400.0), np.diag([1.0, 1.0, 1.0, 1.0]), number=2,
                   description="t1_mprage")
    write_report(root / "sr")
    return root


def restamp_study(folder: Path, *, patient_id: str, accession: str) -> str:
    """Make the study in ``folder`` another patient's: new study, series and instance UIDs (references kept
    consistent), patient ID and accession number. Returns the new StudyInstanceUID."""
    import pydicom

    study_uid, series, instances = generate_uid(), {}, {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(str(path))
        series.setdefault(ds.SeriesInstanceUID, generate_uid())
        instances[ds.SOPInstanceUID] = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series[ds.SeriesInstanceUID]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = instances[ds.SOPInstanceUID]
        ds.PatientID, ds.AccessionNumber = patient_id, accession
        ds.save_as(str(path), enforce_file_format=True)
    return study_uid

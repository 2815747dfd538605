"""Images as the SDK holds them: voxels + affine (+ frame interval), from NIfTI files or arrays.

Everything is checked here, before any upload, so that a bad scan fails in milliseconds
with a message naming the file: wrong dimensionality, too few frames, non-finite voxels or
affine, a singular affine, mismatched DWI/ADC grids. Only voxels, the affine and the frame
interval ever leave this module for the server: NIfTI ``descrip``/``intent_name``/``aux_file``
and every DICOM patient tag stay on the client.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collat_contract.limits import MAX_PERFUSION_ELEMENTS, MAX_VOLUME_VOXELS
from collat_contract.tensors import MIN_PERFUSION_FRAMES

from ..errors import InputFileError, InvalidInput
from .diffusion import check_b_value, combine

MIN_FRAMES = MIN_PERFUSION_FRAMES


@dataclass(frozen=True)
class Volume:
    """Voxels indexed (x, y, z[, t]) with the affine that maps (i, j, k) to RAS millimetres."""

    data: np.ndarray
    affine: np.ndarray
    frame_seconds: float | None = None
    source: str = "<array>"
    header: object | None = field(default=None, compare=False, repr=False)  # the NIfTI header, kept for outputs
    b_value: float | None = None  # a DWI's b-value (s/mm^2) when its DICOM header said it
    dicom_files: tuple[Path, ...] = field(default=(), compare=False, repr=False)  # its DICOM instances, if any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass(frozen=True)
class MapImage:
    """Voxels on the grid of ``reference`` (same shape in x, y, z, same affine)."""

    data: np.ndarray
    reference: Volume

    @property
    def affine(self) -> np.ndarray:
        return self.reference.affine


def _check_affine(affine: np.ndarray, source: str) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise InvalidInput(f"{source}: affine must be 4x4, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidInput(f"{source}: the affine contains non-finite values")
    if abs(np.linalg.det(a[:3, :3])) < 1e-6:
        raise InvalidInput(f"{source}: the affine is singular (the voxel grid has no volume)")
    return a


def _check_voxels(data: np.ndarray, source: str) -> None:
    if data.size == 0:
        raise InvalidInput(f"{source}: the image has no voxels")
    if not np.all(np.isfinite(data)):
        raise InvalidInput(f"{source}: the image contains NaN or infinite values")


def row_major_float32(data: np.ndarray, threads: int = 2) -> np.ndarray:
    """The voxels as C-ordered FP32, the layout the wire carries.

    NIfTI stores x fastest, so nibabel hands out column-major (Fortran) arrays. numpy's one-pass
    conversion of such a 4D series strides a whole volume through memory per element (0.40 s for
    a 128x128x20x60 series here). Copying one slice (all x, y and frames at one z) at a time keeps
    each copy's source and destination within a few MB (0.19 s), and the slices split over two
    threads, since numpy releases the GIL while it copies (0.10 s): the client's share of a
    patient's latency, paid before the server can start.
    """
    if data.ndim != 4 or data.flags.c_contiguous or not data.flags.f_contiguous:
        return np.ascontiguousarray(data, dtype=np.float32)
    out = np.empty(data.shape, np.float32)
    slices = data.shape[2]

    def copy(every: range) -> None:
        for z in every:
            out[:, :, z, :] = data[:, :, z, :]

    workers = max(1, min(threads, slices))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, [range(first, slices, workers) for first in range(workers)]))
    return out


def perfusion_volume(data: np.ndarray, affine: np.ndarray, frame_seconds: float | None,
                     source: str = "<array>", header: object | None = None,
                     dicom_files: tuple[Path, ...] = ()) -> Volume:
    """A checked 4D perfusion series."""
    data = np.asarray(data)
    if data.ndim != 4:
        raise InvalidInput(f"{source}: a perfusion series must be 4D (x, y, z, t), got {data.ndim}D {data.shape}")
    if data.shape[3] < MIN_FRAMES:
        raise InvalidInput(f"{source}: too few frames: {data.shape[3]} (at least {MIN_FRAMES} are needed)")
    if data.size > MAX_PERFUSION_ELEMENTS:
        raise InvalidInput(f"{source}: {data.size} voxels x frames exceed the server's limit of "
                           f"{MAX_PERFUSION_ELEMENTS}")
    if frame_seconds is None or not np.isfinite(frame_seconds) or not 0.05 <= frame_seconds <= 30.0:
        raise InvalidInput(f"{source}: frame interval {frame_seconds} s is missing or implausible (0.05-30 s); "
                           "set pixdim[4] or pass frame_seconds")
    data = row_major_float32(data)
    _check_voxels(data, source)
    if float(data.max()) == float(data.min()):
        raise InvalidInput(f"{source}: the series is constant (all voxels equal)")
    return Volume(data, _check_affine(affine, source), float(frame_seconds), source, header,
                  dicom_files=tuple(dicom_files))


def diffusion_volume(data: np.ndarray, affine: np.ndarray, source: str = "<array>",
                     header: object | None = None, b_value: float | None = None,
                     dicom_files: tuple[Path, ...] = ()) -> Volume:
    """A checked 3D DWI or ADC volume (a trailing axis of length 1 is dropped)."""
    data = np.asarray(data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInput(f"{source}: DWI/ADC must be a 3D volume, got {data.ndim}D {data.shape}")
    if data.size > MAX_VOLUME_VOXELS:
        raise InvalidInput(f"{source}: {data.size} voxels exceed the server's limit of {MAX_VOLUME_VOXELS}")
    data = row_major_float32(data)
    _check_voxels(data, source)
    return Volume(data, _check_affine(affine, source), None, source, header, b_value, tuple(dicom_files))


def check_pair(dwi: Volume, adc: Volume) -> None:
    if dwi.shape != adc.shape:
        raise InvalidInput(f"{dwi.source} {dwi.shape} and {adc.source} {adc.shape} do not share a grid")
    if not np.allclose(dwi.affine, adc.affine, atol=1e-3):
        raise InvalidInput(f"{dwi.source} and {adc.source} have different affines (orientation or position)")


def _gunzip(raw: bytes) -> bytes:
    """ISA-L inflates about 3x faster than zlib (0.18 s against 0.52 s for a 39 MB DCE series here)."""
    try:
        from isal.igzip import decompress
    except ImportError:  # platforms without an isal wheel
        from gzip import decompress
    return decompress(raw)


def _read_data(path: Path, image) -> np.ndarray:
    """The scaled voxel array. A gzipped single-file NIfTI is inflated in one call rather than streamed
    through nibabel's GzipFile, the slowest part of reading a series."""
    import nibabel as nib

    if path.name.lower().endswith(".gz") and type(image) in (nib.Nifti1Image, nib.Nifti2Image):
        return np.asanyarray(type(image).from_bytes(_gunzip(path.read_bytes())).dataobj)
    return np.asanyarray(image.dataobj)


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a damaged file
        raise InputFileError(f"{path}: not a readable NIfTI image ({type(exc).__name__}: {exc})") from None
    elements = int(np.prod(image.shape, dtype=np.int64))
    if elements > MAX_PERFUSION_ELEMENTS:  # refuse from the header, before reading gigabytes
        raise InvalidInput(f"{path}: {'x'.join(map(str, image.shape))} = {elements} voxels exceed the server's "
                           f"limit of {MAX_PERFUSION_ELEMENTS}")
    try:
        data = _read_data(path, image)
    except Exception as exc:
        raise InputFileError(f"{path}: the image data cannot be read ({type(exc).__name__}: {exc})") from None
    if not hasattr(image, "affine") or image.affine is None:
        raise InputFileError(f"{path}: the image has no affine")
    return data, np.asarray(image.affine, dtype=np.float64), image.header


def _nifti_frame_seconds(header) -> float | None:
    zooms = header.get_zooms()
    if len(zooms) < 4 or zooms[3] <= 0:
        return None
    unit = header.get_xyzt_units()[1]
    return float(zooms[3]) * {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)


def nifti_perfusion(path: Path, frame_seconds: float | None = None) -> Volume:
    """A checked 4D perfusion series from a NIfTI file; the frame interval from pixdim[4] unless given."""
    data, affine, header = load_nifti(path)
    if frame_seconds is None and data.ndim == 4:
        frame_seconds = _nifti_frame_seconds(header)
    return perfusion_volume(data, affine, frame_seconds, str(path), header)


def nifti_adc(path: Path) -> Volume:
    """A checked 3D ADC volume from a NIfTI file."""
    data, affine, header = load_nifti(path)
    return diffusion_volume(data, affine, str(path), header)


def _sidecar_b_values(path: Path) -> tuple[float, ...] | None:
    """The b-values of the .bval file beside a NIfTI (BIDS and dcm2niix write one), or None."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    bval = path.with_name(name + ".bval")
    if not bval.is_file():
        return None
    try:
        return tuple(float(v) for v in bval.read_text().split())
    except ValueError:
        raise InputFileError(f"{bval}: not a list of b-values") from None


def nifti_diffusion(path: Path, allow_b_value: bool = False) -> dict[str, Volume]:
    """A DWI NIfTI, with its b-values when a .bval lies beside it: a 4D series of several b-values gives its trace
    (and, with a b=0 volume, its ADC, key ``adc``), a 3D image its one b-value; the b-value is checked."""
    data, affine, header = load_nifti(path)
    b_values = _sidecar_b_values(path)
    if b_values is None:
        return {"dwi": diffusion_volume(data, affine, str(path), header)}
    volumes = 1 if data.ndim == 3 else data.shape[3]
    if len(b_values) != volumes:
        raise InputFileError(f"{path}: its .bval lists {len(b_values)} b-values for {volumes} volume(s)")
    if data.ndim == 4 and volumes > 1:
        try:
            images = combine(np.asarray(data, dtype=np.float32), b_values)
        except ValueError as exc:
            raise InvalidInput(f"{path}: {exc}") from None
        check_b_value(images.b_value, str(path), allow_b_value)
        out = {"dwi": diffusion_volume(images.trace, affine, f"{path} (trace, b={images.b_value:g})", header,
                                       images.b_value)}
        if images.adc is not None:
            out["adc"] = diffusion_volume(images.adc, affine, f"{path} (ADC from b=0)", header)
        return out
    check_b_value(b_values[0], str(path), allow_b_value)
    return {"dwi": diffusion_volume(data, affine, str(path), header, b_values[0])}

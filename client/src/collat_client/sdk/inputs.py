"""What a caller names (a NIfTI file, a DICOM folder, a :class:`Study`, an in-memory :class:`Volume`) -> checked
volumes. The one place where a path is told apart as a file or a DICOM folder, so that every entry point reads
images alike."""

from __future__ import annotations

from pathlib import Path

from ..dicom import Study, read_study
from ..errors import InvalidInput
from ..imaging.volumes import (
    Volume,
    diffusion_volume,
    nifti_adc,
    nifti_diffusion,
    nifti_perfusion,
    perfusion_volume,
)

ImageInput = str | Path | Volume


def study_volumes(study: Study, frame_seconds: float | None = None) -> dict[str, Volume]:
    """The checked volumes (keys perfusion, dwi, adc) of the series a study chose, each named by its folder and
    series, so that a refusal says which series it was."""
    out: dict[str, Volume] = {}
    if study.perfusion is not None:
        p = study.perfusion
        out["perfusion"] = perfusion_volume(p.data, p.affine, frame_seconds or p.frame_seconds,
                                            f"{study.folder}: {p.label}", dicom_files=p.files)
    for role in ("dwi", "adc"):
        chosen = getattr(study, role)
        if chosen is not None:
            out[role] = diffusion_volume(chosen.data, chosen.affine, f"{study.folder}: {chosen.label}",
                                         b_value=chosen.b_value, dicom_files=chosen.files)
    return out


def dicom_volumes(folder: Path, role: str, frame_seconds: float | None = None,
                  **choices: object) -> dict[str, Volume]:
    """The checked volumes a DICOM folder gives when the caller says it holds ``role`` (perfusion, dwi or adc); a
    DWI folder may give its ADC too. Refused, with every candidate's reason, when it holds no usable ``role``."""
    if role == "perfusion":  # a DWI beside the perfusion is not used here: its b-value is not this call's business
        choices.setdefault("allow_b_value", True)
    study = read_study(folder, given_as=role if role != "perfusion" else None, **choices)
    volumes = study_volumes(study, frame_seconds)
    if role not in volumes:
        left = [f"{e.label}: {e.reason}" for e in study.entries if e.role in (role, "unreadable")]
        raise InvalidInput(f"{folder}: no usable {role} series" + (f" ({'; '.join(left)})" if left else ""))
    return volumes


def read_perfusion(path: Path | str, frame_seconds: float | None = None) -> Volume:
    """A 4D perfusion series from a NIfTI file, or from a DICOM folder (the perfusion series found in it)."""
    path = Path(path)
    if path.is_dir():
        return dicom_volumes(path, "perfusion", frame_seconds)["perfusion"]
    return nifti_perfusion(path, frame_seconds)


def read_diffusion(path: Path | str, role: str = "dwi", allow_b_value: bool = False) -> Volume:
    """A 3D DWI or ADC volume from a NIfTI file, or from a DICOM folder (``role`` says which series to take: a
    multi-b-value series gives its trace as the DWI and, with a b=0 volume, its computed ADC)."""
    path = Path(path)
    if path.is_dir():
        return dicom_volumes(path, role, allow_b_value=allow_b_value)[role]
    if role == "dwi":
        return nifti_diffusion(path, allow_b_value)["dwi"]
    return nifti_adc(path)


def perfusion_input(value: ImageInput | None) -> Volume | None:
    """A perfusion series from a path or a volume; in-memory images get the same checks as files."""
    if value is None:
        return None
    if isinstance(value, Volume):
        return perfusion_volume(value.data, value.affine, value.frame_seconds, value.source, value.header,
                                value.dicom_files)
    return read_perfusion(value)


def diffusion_input(value: ImageInput | None, role: str = "dwi", allow_b_value: bool = False) -> Volume | None:
    if value is None:
        return None
    if isinstance(value, Volume):
        return diffusion_volume(value.data, value.affine, value.source, value.header, value.b_value,
                                value.dicom_files)
    return read_diffusion(value, role, allow_b_value)


def diffusion_pair(dwi: ImageInput | None, adc: ImageInput | None,
                   allow_b_value: bool) -> tuple[Volume | None, Volume | None]:
    """DWI and ADC; a DWI given alone brings its own ADC when it can: a DICOM folder the scanner's or one computed
    from b=0, a multi-b NIfTI with its .bval one computed from b=0."""
    if dwi is not None and adc is None and isinstance(dwi, str | Path):
        found = dicom_volumes(Path(dwi), "dwi", allow_b_value=allow_b_value) if Path(dwi).is_dir() else \
            nifti_diffusion(Path(dwi), allow_b_value)
        return found["dwi"], found.get("adc")
    return diffusion_input(dwi, "dwi", allow_b_value), diffusion_input(adc, "adc", allow_b_value)

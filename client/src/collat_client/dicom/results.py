"""Every DICOM object a result gives PACS, written together or not at all.

* ``lesion_core_seg.dcm``: the lesion and the ADC core as one binary SEG on the DWI's frames;
* ``measurement_report_sr.dcm``: the TID 1500 report (volumes tied to the SEG's segments, decisions, CPS);
* ``summary_sc.dcm``: the one-page summary (colour secondary capture);
* ``collateral_<phase>/slice_NNN.dcm``: a colour secondary-capture series per phase map.

Each object is a new series in the source study (its patient and study identity, read from a source
instance on this machine). A Siemens mosaic DWI has no per-slice frames to segment: the SEG is left out,
the rest is written, and the note says so.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from collat_contract.names import HYPOPERFUSION_UNET, MROD_NET, PHASE_NAMES

from ..errors import InvalidInput

SEG_FILE = "lesion_core_seg.dcm"
REPORT_FILE = "measurement_report_sr.dcm"
SUMMARY_FILE = "summary_sc.dcm"


def phase_folder(phase: str) -> str:
    return f"collateral_{phase}"


@dataclass
class DicomOutputs:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def planned_names(perfusion: bool, diffusion: bool) -> list[str]:
    """The top-level names ``write_dicom_results`` writes for a result with these parts (for overwrite checks)."""
    names = [REPORT_FILE, SUMMARY_FILE]
    if diffusion:
        names.append(SEG_FILE)
    if perfusion:
        names += [phase_folder(p) for p in PHASE_NAMES]
    return names


def _reference(files: tuple[Path, ...]):
    import pydicom

    return pydicom.dcmread(str(files[0]), stop_before_pixels=True) if files else None


def write_dicom_results(result, directory: Path, *, overwrite: bool = False) -> DicomOutputs:
    """Write the objects of ``result`` (an :class:`~collat_client.result.InferenceResult`) into ``directory``."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise InvalidInput("DICOM output needs the dicom extra: pip install 'collat-client[dicom]'") from None
    perfusion = result.collateral_maps.reference if result.collateral_maps is not None else None
    dwi_files = result.dwi.dicom_files if result.dwi is not None else ()
    perfusion_files = perfusion.dicom_files if perfusion is not None else ()
    reference = _reference(dwi_files) or _reference(perfusion_files)
    if reference is None:
        raise InvalidInput("DICOM output needs DICOM input: the objects join the source study, whose identity only "
                           "the source instances carry")
    names = planned_names(result.collateral_maps is not None, result.lesion_mask is not None)
    clashes = [n for n in names if (directory / n).exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{directory}: would overwrite {', '.join(clashes[:3])} (use --force / overwrite)")
    from .capture import copy_character_set

    with warnings.catch_warnings():  # highdicom warns about source names like "PSM" (one component): not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        try:
            datasets, notes = _build(result, reference, dwi_files, perfusion_files)
            for dataset in datasets.values():
                copy_character_set(dataset, reference)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # what highdicom says of odd source headers
            source = (dwi_files or perfusion_files)[0].parent
            raise InvalidInput(f"{source}: DICOM output could not be built from these instances ({exc}); nothing "
                               f"was written to {directory}") from None
    outputs = DicomOutputs(notes=notes)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".collat-", dir=directory))
    try:
        for name, dataset in datasets.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            dataset.save_as(str(staging / name), enforce_file_format=True)
        for name in names:  # moved in whole: a folder of slices is replaced, never merged; a stale SEG removed
            if (directory / name).is_dir():
                shutil.rmtree(directory / name)
            if (staging / name).exists():
                os.replace(staging / name, directory / name)
            else:
                (directory / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    outputs.files = sorted(directory / name for name in datasets)
    return outputs


def _build(result, reference, dwi_files: tuple[Path, ...], perfusion_files: tuple[Path, ...]):
    """(relative file name -> dataset, notes) of every object ``result`` gives."""
    from ..imaging.overview import render_overview
    from .capture import phase_map_captures, research_only, summary_capture
    from .report import build_report
    from .seg import build_segmentation

    metrics = result.metrics
    flagged = research_only(metrics)
    datasets, notes = {}, []
    segmentation, sources = None, []
    unet = metrics.models.get(HYPOPERFUSION_UNET)
    if result.lesion_mask is not None and result.core_mask is not None:
        try:
            reported = metrics.hypoperfusion is None or metrics.hypoperfusion.lesion_reported
            segmentation, sources = build_segmentation(
                result.lesion_mask.data if reported else None, result.core_mask.data, result.dwi.affine, dwi_files,
                algorithm=HYPOPERFUSION_UNET, version=unet.version if unet else "unknown",
                checksum=unet.sha256 if unet else None, research_only=flagged)
            datasets[SEG_FILE] = segmentation
        except InvalidInput as exc:
            notes.append(f"no {SEG_FILE}: {exc}")
    main_model = unet or metrics.models.get(MROD_NET)
    evidence = [segmentation, *sources] if segmentation is not None else [reference]
    datasets[REPORT_FILE] = build_report(metrics, evidence, segmentation=segmentation, algorithm="collat",
                                         version=main_model.version if main_model else "unknown",
                                         research_only=flagged)
    png = io.BytesIO()
    render_overview(png, metrics, collateral_maps=result.collateral_maps, lesion=result.lesion_mask,
                    core=result.core_mask, dwi=result.dwi)
    datasets[SUMMARY_FILE] = summary_capture(metrics, png.getvalue(), reference)
    if result.collateral_maps is not None:
        maps_reference = _reference(perfusion_files) or reference
        for phase, series in zip(PHASE_NAMES, phase_map_captures(result.collateral_maps.data,
                                                                  result.collateral_maps.affine, maps_reference,
                                                                  research_only=flagged), strict=True):
            for image in series:
                datasets[f"{phase_folder(phase)}/slice_{int(image.InstanceNumber):03d}.dcm"] = image
    return datasets, notes

"""A pipeline's answer: typed metrics, maps with the affine of the image they came from, and ``save``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from collat_contract.names import PHASE_NAMES
from collat_contract.tensors import BRAIN_MASK, COLLATERAL_MAPS, CORE_MASK, HYPOPERFUSION_PROB, LESION_MASK

from ..imaging.overview import render_overview
from ..imaging.volumes import MapImage, Volume
from ..schema import Metrics

if TYPE_CHECKING:
    from ..dicom.results import DicomOutputs


def output_files(perfusion: bool, diffusion: bool) -> list[str]:
    """The files ``save`` writes for a run with these inputs."""
    names = ["metrics.json", "overview.png"]
    if perfusion:
        names += [f"collateral_{p}.nii.gz" for p in PHASE_NAMES] + ["collateral_maps.nii.gz", "brain_mask.nii.gz"]
    if diffusion:
        names += ["hypoperfusion_prob.nii.gz", "lesion_mask.nii.gz", "core_mask.nii.gz"]
    return names


def _nifti(data: np.ndarray, reference: Volume):
    """A NIfTI image on the reference's grid, reusing its header (orientation codes, units) but not its scaling."""
    import nibabel as nib

    header = None
    if isinstance(reference.header, nib.Nifti1Header):
        header = reference.header.copy()
        header["descrip"] = b"collat output"
        header["intent_name"] = b""
        header["aux_file"] = b""
    image = nib.Nifti1Image(data, reference.affine, header=header)
    image.set_qform(reference.affine, code=1 if header is None else int(header["qform_code"]) or 1)
    image.set_sform(reference.affine, code=1 if header is None else int(header["sform_code"]) or 1)
    image.header.set_data_dtype(data.dtype)
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    return image


@dataclass(frozen=True)
class InferenceResult:
    pipeline: str
    metrics: Metrics
    collateral_maps: MapImage | None  # (x, y, z, 5): arterial, capillary, early venous, late venous, delay
    brain_mask: MapImage | None
    hypoperfusion_prob: MapImage | None
    lesion_mask: MapImage | None  # the lesion the volumes count, as the server defines it
    core_mask: MapImage | None
    dwi: Volume | None
    seconds: float  # round trip of the inference call

    @classmethod
    def from_outputs(cls, pipeline: str, metrics: dict, outputs: dict[str, np.ndarray],
                     volumes: dict[str, Volume], seconds: float) -> InferenceResult:
        perf, dwi = volumes.get("perfusion"), volumes.get("dwi")

        def on(name: str, reference: Volume | None) -> MapImage | None:
            return MapImage(outputs[name], reference) if name in outputs and reference is not None else None

        return cls(pipeline, Metrics.model_validate(metrics), on(COLLATERAL_MAPS.name, perf), on(BRAIN_MASK.name, perf),
                   on(HYPOPERFUSION_PROB.name, dwi), on(LESION_MASK.name, dwi), on(CORE_MASK.name, dwi), dwi, seconds)

    def save_dicom(self, directory: str | Path, *, overwrite: bool = False) -> DicomOutputs:
        """DICOM for PACS (the ``dicom`` extra), as new series of the source study: the lesion and the ADC core as
        one SEG on the DWI's own frames, a TID 1500 measurement report, a summary page and one colour series per
        phase map (secondary captures). Needs DICOM input: the objects carry the source's patient and study
        identity, read from its files on this machine only. See :mod:`collat_client.dicom.results`."""
        from ..dicom.results import write_dicom_results

        return write_dicom_results(self, Path(directory), overwrite=overwrite)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write every map as NIfTI on its input's grid, ``metrics.json`` and ``overview.png``.

        All files are written into a temporary folder beside ``directory`` first and moved in at
        the end, so a failure leaves nothing half-written. Existing files are not overwritten
        unless ``overwrite``.
        """
        import nibabel as nib

        directory = Path(directory)
        names = output_files(self.collateral_maps is not None, self.hypoperfusion_prob is not None)
        clashes = [n for n in names if (directory / n).exists()]
        if clashes and not overwrite:
            raise FileExistsError(f"{directory}: would overwrite {', '.join(clashes[:3])} (use --force / overwrite)")
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".collat-", dir=directory.parent))
        try:
            if self.collateral_maps is not None:
                maps = self.collateral_maps
                for i, phase in enumerate(PHASE_NAMES):
                    nib.save(_nifti(np.ascontiguousarray(maps.data[..., i]), maps.reference),
                             staging / f"collateral_{phase}.nii.gz")
                nib.save(_nifti(maps.data, maps.reference), staging / "collateral_maps.nii.gz")
                nib.save(_nifti(self.brain_mask.data.astype(np.uint8), self.brain_mask.reference),
                         staging / "brain_mask.nii.gz")
            if self.hypoperfusion_prob is not None:
                nib.save(_nifti(self.hypoperfusion_prob.data, self.hypoperfusion_prob.reference),
                         staging / "hypoperfusion_prob.nii.gz")
                for name, mask in (("lesion_mask", self.lesion_mask), ("core_mask", self.core_mask)):
                    nib.save(_nifti(mask.data.astype(np.uint8), mask.reference), staging / f"{name}.nii.gz")
            (staging / "metrics.json").write_text(json.dumps(self.metrics.model_dump(mode="json"), indent=2))
            render_overview(staging / "overview.png", self.metrics, collateral_maps=self.collateral_maps,
                            lesion=self.lesion_mask, core=self.core_mask, dwi=self.dwi)
            directory.mkdir(parents=True, exist_ok=True)
            for name in names:
                os.replace(staging / name, directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [directory / n for n in names]

"""The hypoperfusion pipeline's two Python steps: DWI + ADC + clinical -> slabs, slab probabilities -> maps + metrics.

Inputs come in any pose: native scans are registered to MNI space, inputs already in MNI
space are recognised (``collat_ensemble.registration``). The core is measured on the scan's
own grid; the U-Net's probability comes back onto that grid through the registration, and
every volume is counted there. Quality gates (``collat_ensemble.quality``) withhold the
decisions of an input that can be analysed but not trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from collat_contract.clinical import ClinicalInputError, check_clinical
from collat_contract.limits import MAX_VOLUME_VOXELS
from collat_contract.metrics import LesionWithheld

from .. import quality
from ..errors import InputValidationError
from ..geometry import reorient_from_ras
from ..hypoperfusion import VolumeCalibration, assess_on_scan, plausibility_checks
from ..preprocess import MNI_2MM_SHAPE, SLAB_STRIDE, NativeGrid, average_slabs, prepare_diffusion, slab_starts
from ..template import Template
from .context import StepTimer, orientation_code, orientation_from_dict, orientation_to_dict, read_affine
from .metrics import HypoperfusionPart


@dataclass(frozen=True)
class ClinicalInputs:
    """What the clinician knows; validated here again (by the shared rules) because the server trusts nothing it
    receives."""

    nihss: int | None  # None: not known, the U-Net (which reads it) is not run
    age: float | None = None
    side: str = "unknown"
    onset_to_imaging_min: float | None = None
    dwi_b_value: float | None = None

    @classmethod
    def from_json(cls, value: Any) -> ClinicalInputs:
        try:
            checked = check_clinical(value)
        except ClinicalInputError as exc:
            raise InputValidationError(f"CLINICAL: {exc}") from None
        return cls(**checked)


def _volume(value: np.ndarray, what: str) -> np.ndarray:
    volume = np.asarray(value)
    if volume.ndim != 3:
        raise InputValidationError(f"{what} must be a 3D volume, got {volume.ndim}D {volume.shape}")
    if volume.size > MAX_VOLUME_VOXELS:
        raise InputValidationError(f"{what} has {volume.size} voxels, more than the {MAX_VOLUME_VOXELS} accepted")
    return volume


def preprocess(dwi: np.ndarray, adc: np.ndarray, dwi_affine: np.ndarray, adc_affine: np.ndarray,
               clinical: dict[str, Any], template: Template | None = None, stride: int = SLAB_STRIDE,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """-> slabs ``[S, 4, 16, 128, 128]``, NIHSS ``[S, 1]``, core and brain on the scan's RAS grid (UINT8), context."""
    timer = StepTimer()
    inputs = ClinicalInputs.from_json(clinical)
    dwi, adc = _volume(dwi, "DWI"), _volume(adc, "ADC")
    affine = read_affine(dwi_affine, "DWI_AFFINE")
    # Without an NIHSS the network is not run (below), so the score it would have read does not matter.
    prepared = prepare_diffusion(dwi, adc, affine, nihss=inputs.nihss or 0, side=inputs.side,
                                 adc_affine=read_affine(adc_affine, "ADC_AFFINE"), template=template,
                                 stride=stride)
    grid, registration = prepared.grid, prepared.registration
    brain_ml = float(prepared.brain.sum()) * grid.voxel_ml
    checks = quality.registration_checks(registration.similarity, registration.template_coverage,
                                         registration.scale, brain_ml)
    checks.append(quality.b_value_check(inputs.dwi_b_value))
    # Nothing to read the hypoperfusion on (no side, no core), or no NIHSS for the network to read: the ensemble's
    # graph still passes the U-Net one empty slab, whose output the postprocessing discards.
    run = prepared.side != "unknown" and inputs.nihss is not None
    slabs = prepared.slabs if run else np.zeros((1,) + prepared.slabs.shape[1:], dtype=np.float32)
    nihss = prepared.nihss if run else np.zeros((1, 1), dtype=np.float32)
    context = {
        "diffusion": {"input_shape": list(grid.input_shape), "orientation": orientation_to_dict(grid.orientation),
                      "ras_affine": grid.ras_affine.tolist(), "native_to_mni": grid.native_to_mni.tolist(),
                      "orientation_code": orientation_code(grid.orientation), "adc_units": prepared.adc_units,
                      "side": prepared.side, "side_inferred": prepared.side_inferred, "brain_ml": brain_ml,
                      "registration": registration.as_dict(), "core_artefacts_removed_ml": prepared.core_removed_ml,
                      "slab_stride": prepared.stride, "network_run": run},
        "quality_checks": [c.as_dict() for c in checks],
        "clinical": asdict(inputs),
        "timings_ms": {"preprocess_diffusion": timer.elapsed_ms(),
                       "registration": round(registration.seconds * 1e3, 2)},
        "preprocess_diffusion_end": StepTimer.now(),
    }
    return slabs, nihss, prepared.core.astype(np.uint8), prepared.brain.astype(np.uint8), context


def _grid(context: dict[str, Any]) -> NativeGrid:
    d = context["diffusion"]
    return NativeGrid(tuple(d["input_shape"]), orientation_from_dict(d["orientation"]),
                      np.array(d["ras_affine"], dtype=np.float64), np.array(d["native_to_mni"], dtype=np.float64))


def postprocess(probabilities: np.ndarray, core: np.ndarray, brain: np.ndarray, context: dict[str, Any],
                calibration: VolumeCalibration | None = None, domain: quality.TrainingDomain | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, HypoperfusionPart, dict[str, float]]:
    """-> hypoperfusion probability (FP32), lesion and core masks (UINT8) on the DWI's grid, the hypoperfusion
    part of the metrics (its ``quality`` section included), and this step's timings. ``calibration`` and
    ``domain``: the served U-Net's lesion volume calibration and training domain, from its model card."""
    timer = StepTimer()
    waited = round((timer.start - float(context["preprocess_diffusion_end"])) * 1000.0, 2)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    d = context["diffusion"]
    run = bool(d.get("network_run", True))
    starts = slab_starts(stride=int(d.get("slab_stride", SLAB_STRIDE)))
    expected = (len(starts) if run else 1, 1, 16, 128, 128)
    if probabilities.shape != expected:
        raise InputValidationError(f"slab probabilities {probabilities.shape} are not {expected}")
    grid = _grid(context)
    core, brain = np.asarray(core).astype(bool), np.asarray(brain).astype(bool)
    if core.shape != grid.ras_shape or brain.shape != grid.ras_shape:
        raise InputValidationError(f"core {core.shape} / brain {brain.shape} are not on the scan's grid "
                                   f"{grid.ras_shape}")
    clinical = context["clinical"]
    on_mni = average_slabs(probabilities, starts) if run else np.zeros(MNI_2MM_SHAPE, dtype=np.float32)
    prob, assessment = assess_on_scan(on_mni, core, brain, grid, nihss=clinical["nihss"], age=clinical["age"],
                                      calibration=calibration)
    checks = context["quality_checks"] + [c.as_dict() for c in plausibility_checks(
        assessment, core, grid, side=d["side"], brain_ml=float(d["brain_ml"]), domain=domain, run=run,
        nihss_given=clinical["nihss"] is not None)]
    gates = quality.summary(checks)
    part = HypoperfusionPart(
        **assessment.as_metrics(),
        side=d["side"],
        side_inferred=d["side_inferred"],
        adc_units_assumed=d["adc_units"],
        input_shape=d["input_shape"],
        input_orientation=d["orientation_code"],
        registration=d["registration"],
        core_artefacts_removed_ml=d["core_artefacts_removed_ml"],
        brain_volume_ml=round(float(d["brain_ml"]), 1),
        clinical=clinical,
        quality=gates,
    )
    for decision in quality.BOTH_DECISIONS:  # never a decision from an input that failed a gate bearing on it
        if quality.withheld(checks, decision):
            part[decision] = None
    if quality.withheld(checks, "hypoperfusion"):  # the lesion stays in the outputs, for inspection only
        part.update(hypoperfusion_ml=None, mismatch_ml=None, mismatch_ratio=None, mismatch_ratio_capped=False,
                    lesion_withheld=LesionWithheld(
                        status="withheld" if run else "not_run",
                        reasons=[c["reason"] for c in checks
                                 if c["verdict"] == "fail" and "hypoperfusion" in c["withholds"]],
                        drawn_ml=round(assessment.hypoperfusion_ml, 2) if run else None))
    # The probability is raised to at least 1 inside the core so the returned map agrees with the lesion volume.
    outputs = [reorient_from_ras(np.ascontiguousarray(x), grid.orientation) for x in
               (np.maximum(prob, core).astype(np.float32), assessment.lesion.astype(np.uint8), core.astype(np.uint8))]
    timings = {**context["timings_ms"], "network_diffusion": waited, "postprocess_hypoperfusion": timer.elapsed_ms()}
    return outputs[0], outputs[1], outputs[2], part, timings

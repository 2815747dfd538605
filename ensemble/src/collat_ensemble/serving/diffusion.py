"""The hypoperfusion pipeline's two Python steps: DWI + ADC + clinical -> slabs, slab probabilities -> maps + metrics.

Inputs must already be in MNI space (the studies normalized them): the volumes are
resampled onto the MNI 2 mm grid 91x109x60 by their affines, and a field of view that cannot
be MNI space is refused. Outputs return on the DWI's own grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from collat_contract.clinical import ClinicalInputError, check_clinical

from ..errors import InputValidationError
from ..hypoperfusion import assess_hypoperfusion
from ..preprocess import (
    MNI_2MM_AFFINE,
    MNI_2MM_SHAPE,
    PreparedDiffusion,
    average_slabs,
    mni_to_input_grid,
    prepare_diffusion,
    slab_starts,
)
from .context import StepTimer, orientation_code, orientation_from_dict, orientation_to_dict, read_affine

MAX_VOLUME_VOXELS = 64 * 1024 * 1024  # per DWI/ADC volume: a 0.25 mm isotropic whole head is ~30 M


@dataclass(frozen=True)
class ClinicalInputs:
    """What the clinician knows; validated here again (by the shared rules) because the server trusts nothing it
    receives."""

    nihss: int
    age: float | None = None
    side: str = "unknown"
    onset_to_imaging_min: float | None = None

    @classmethod
    def from_json(cls, value: Any) -> ClinicalInputs:
        try:
            checked = check_clinical(value)
        except ClinicalInputError as exc:
            raise InputValidationError(f"CLINICAL: {exc}") from None
        return cls(checked["nihss"], checked["age"], checked["side"], checked["onset_to_imaging_min"])


def _volume(value: np.ndarray, what: str) -> np.ndarray:
    volume = np.asarray(value)
    if volume.ndim != 3:
        raise InputValidationError(f"{what} must be a 3D volume, got {volume.ndim}D {volume.shape}")
    if volume.size > MAX_VOLUME_VOXELS:
        raise InputValidationError(f"{what} has {volume.size} voxels, more than the {MAX_VOLUME_VOXELS} accepted")
    return volume


def preprocess(dwi: np.ndarray, adc: np.ndarray, dwi_affine: np.ndarray, adc_affine: np.ndarray,
               clinical: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """-> slabs ``[S, 4, 16, 128, 128]``, NIHSS ``[S, 1]``, core and brain ``(91, 109, 60)`` UINT8, context."""
    timer = StepTimer()
    inputs = ClinicalInputs.from_json(clinical)
    dwi, adc = _volume(dwi, "DWI"), _volume(adc, "ADC")
    affine = read_affine(dwi_affine, "DWI_AFFINE")
    prepared = prepare_diffusion(dwi, adc, affine, nihss=inputs.nihss, side=inputs.side,
                                 adc_affine=read_affine(adc_affine, "ADC_AFFINE"))
    context = {
        "diffusion": {"input_affine": affine.tolist(), "input_shape": list(prepared.input_shape),
                      "orientation": orientation_to_dict(prepared.orientation),
                      "orientation_code": orientation_code(prepared.orientation), "adc_units": prepared.adc_units,
                      "side": prepared.side, "side_inferred": prepared.side_inferred},
        "clinical": asdict(inputs),
        "timings_ms": {"preprocess_diffusion": timer.elapsed_ms()},
        "preprocess_diffusion_end": StepTimer.now(),
    }
    return (prepared.slabs, prepared.nihss, prepared.core.astype(np.uint8), prepared.brain.astype(np.uint8),
            context)


def _prepared_geometry(context: dict[str, Any], core: np.ndarray, brain: np.ndarray) -> PreparedDiffusion:
    d = context["diffusion"]
    return PreparedDiffusion(np.empty((0,), np.float32), 0.0, brain, core, d["adc_units"], d["side"],
                             d["side_inferred"], orientation_from_dict(d["orientation"]),
                             np.array(d["input_affine"], dtype=np.float64), tuple(d["input_shape"]))


def postprocess(probabilities: np.ndarray, core: np.ndarray, brain: np.ndarray,
                context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], dict[str, float]]:
    """-> hypoperfusion probability (FP32), lesion and core masks (UINT8) on the DWI's grid, the hypoperfusion
    part of the metrics, and this step's timings."""
    timer = StepTimer()
    waited = round((timer.start - float(context["preprocess_diffusion_end"])) * 1000.0, 2)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    expected = (len(slab_starts()), 1, 16, 128, 128)
    if probabilities.shape != expected:
        raise InputValidationError(f"slab probabilities {probabilities.shape} are not {expected}")
    core, brain = np.asarray(core).astype(bool), np.asarray(brain).astype(bool)
    if core.shape != MNI_2MM_SHAPE or brain.shape != MNI_2MM_SHAPE:
        raise InputValidationError(f"core {core.shape} / brain {brain.shape} are not on the MNI grid {MNI_2MM_SHAPE}")
    prob = np.where(brain, average_slabs(probabilities), 0.0).astype(np.float32)
    clinical = context["clinical"]
    assessment = assess_hypoperfusion(prob, core, brain, MNI_2MM_AFFINE, nihss=clinical["nihss"],
                                      age=clinical["age"])
    geometry = _prepared_geometry(context, core, brain)
    # The probability is raised to at least 1 inside the core so the returned map agrees with the lesion volume.
    prob_input = mni_to_input_grid(np.maximum(prob, core.astype(np.float32)), geometry, order=1)
    lesion_input = mni_to_input_grid(assessment.lesion.astype(np.float32), geometry, order=1) >= 0.5
    core_input = mni_to_input_grid(core.astype(np.float32), geometry, order=1) >= 0.5
    d = context["diffusion"]
    part = {
        **assessment.as_metrics(),
        "side": d["side"],
        "side_inferred": d["side_inferred"],
        "adc_units_assumed": d["adc_units"],
        "input_shape": d["input_shape"],
        "input_orientation": d["orientation_code"],
        "clinical": clinical,
    }
    timings = {**context["timings_ms"], "network_diffusion": waited, "postprocess_hypoperfusion": timer.elapsed_ms()}
    return prob_input.astype(np.float32), lesion_input.astype(np.uint8), core_input.astype(np.uint8), part, timings

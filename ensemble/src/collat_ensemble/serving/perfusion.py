"""The collateral pipeline's two Python steps: perfusion series -> network input, network output -> maps + metrics.

Wire format (documented in model_repository/README.md): the series arrives as FP32
``(X, Y, Z, T)``, i.e. nibabel's index order, with the NIfTI affine that maps (i, j, k) to
scanner RAS millimetres, and the frame interval in seconds. Maps return on that same grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from collat_contract.limits import MAX_PERFUSION_ELEMENTS
from collat_contract.metrics import CollateralGrade, CollateralMetrics

from ..clinical import volume_ml
from ..contrast import DSC_CONVERSION
from ..errors import InputValidationError
from ..preprocess import maps_to_grid, mask_phase_maps, prepare_perfusion
from ..template import Template
from ..territory import CPSRule, assess_collaterals
from .context import StepTimer, grid_from_dict, grid_to_dict, orientation_code, read_affine


@dataclass(frozen=True)
class NetworkGrid:
    """The grid 3D-MROD-Net was trained on (from the checkpoint's preset, set in the model config)."""

    frames: int
    frame_seconds: float
    slices: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> NetworkGrid:
        """``"60x20x128x128@1.6"`` -> frames x slices x height x width at frame_seconds."""
        try:
            dims, dt = text.split("@")
            t, d, h, w = (int(v) for v in dims.split("x"))
            return cls(t, float(dt), d, h, w)
        except ValueError:
            raise ValueError(f"network grid {text!r} is not of the form TxDxHxW@seconds") from None

    def __str__(self) -> str:
        return f"{self.frames}x{self.slices}x{self.height}x{self.width}@{self.frame_seconds:g}"


def _scalar(value: np.ndarray, what: str) -> float:
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size != 1:
        raise InputValidationError(f"{what} must be a single number, got {flat.size} values")
    return float(flat[0])


def preprocess(series: np.ndarray, affine: np.ndarray, frame_seconds: np.ndarray,
               grid: NetworkGrid, template: Template | None = None, dsc_conversion: str = DSC_CONVERSION,
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """-> network input ``[1, T, D, H, W]`` FP32, brain mask ``[D, H, W]`` UINT8, context. ``dsc_conversion``:
    the version the served weights were trained on (:func:`..contrast.trained_dsc_conversion`)."""
    timer = StepTimer()
    series = np.asarray(series)
    if series.ndim != 4:
        raise InputValidationError(f"PERFUSION must be 4D (x, y, z, t), got {series.ndim}D {series.shape}")
    if series.size > MAX_PERFUSION_ELEMENTS:
        raise InputValidationError(f"PERFUSION has {series.size} elements, more than the {MAX_PERFUSION_ELEMENTS} "
                                   "this server accepts")
    affine = read_affine(affine, "PERFUSION_AFFINE")
    dt = _scalar(frame_seconds, "FRAME_SECONDS")
    prepared = prepare_perfusion(series, affine, dt, frames=grid.frames, frame_interval=grid.frame_seconds,
                                 slices=grid.slices, height=grid.height, width=grid.width, template=template,
                                 dsc_conversion=dsc_conversion)
    registration = prepared.registration
    context = {
        "perfusion": {"grid": grid_to_dict(prepared.grid), "input_affine": affine.tolist(),
                      "frames": int(series.shape[3]), "frame_seconds": dt,
                      "orientation": orientation_code(prepared.grid.orientation), "network_grid": str(grid),
                      "contrast": prepared.bolus.as_dict(),
                      "registration": registration.as_dict() if registration else None,
                      "registration_problem": prepared.registration_problem},
        "timings_ms": {"preprocess_perfusion": timer.elapsed_ms()},
        "preprocess_perfusion_end": StepTimer.now(),
    }
    return prepared.network_input[None], prepared.mask.astype(np.uint8), context


def grade(maps_xyz: np.ndarray, mask_xyz: np.ndarray, grid_affine: np.ndarray, perfusion: dict[str, Any],
          trained_modalities: list[str] | None, rule: CPSRule | None = None) -> CollateralGrade:
    """The CPS part of the metrics: the assessment, or every field null and ``cps_withheld`` saying why.

    A grade needs the series in template space (its registration) and maps from a network trained on the
    series' modality; without either the maps are still delivered, only the grade is withheld.
    """
    kind = str(perfusion["contrast"]["kind"]).lower()
    registration = perfusion.get("registration")
    reason = ""
    if registration is None:
        problem = perfusion.get("registration_problem") or "no registration"
        reason = f"the series could not be placed in template space ({problem})"
    elif not trained_modalities:
        reason = "the served 3D-MROD-Net's model card does not say which modalities it was trained on"
    elif kind not in trained_modalities:
        reason = (f"the served 3D-MROD-Net was trained on {'/'.join(m.upper() for m in trained_modalities)} only, "
                  f"not on {kind.upper()}: the maps are shown, the grade is not")
    if not reason:
        native_to_mni = np.array(registration["native_to_mni"], dtype=np.float64)
        try:
            return assess_collaterals(maps_xyz, mask_xyz, native_to_mni @ grid_affine, rule=rule).as_dict()
        except InputValidationError as exc:
            reason = str(exc)
    return CollateralGrade(ischaemic_side=None, side_source=None, hypoperfused_fraction=None, cps_estimate=None,
                           cps_label=None, territory_voxels=None, cps_withheld=reason)


def postprocess(phases: np.ndarray, mask: np.ndarray, context: dict[str, Any],
                trained_modalities: list[str] | None = None, rule: CPSRule | None = None,
                ) -> tuple[np.ndarray, np.ndarray, CollateralMetrics, dict[str, float]]:
    """-> maps ``(X, Y, Z, 5)`` FP32 and brain mask ``(X, Y, Z)`` UINT8 on the input grid, the collateral
    part of the metrics, and this step's timings. ``trained_modalities``: what the network's model card says it
    was trained on ("dce", "dsc"); ``rule``: the CPS rule fitted on that network's maps (its card's), else the
    default one."""
    timer = StepTimer()
    waited = round((timer.start - float(context["preprocess_perfusion_end"])) * 1000.0, 2)
    phases = np.asarray(phases, dtype=np.float32)
    if phases.ndim == 5:
        if phases.shape[0] != 1:
            raise InputValidationError(f"one series per request, got a batch of {phases.shape[0]} map sets")
        phases = phases[0]
    mask = np.asarray(mask).astype(bool)
    if phases.ndim != 4 or phases.shape[0] != 5 or phases.shape[1:] != mask.shape:
        raise InputValidationError(f"network maps {phases.shape} do not match the brain mask {mask.shape}")
    grid = grid_from_dict(context["perfusion"]["grid"])
    input_affine = np.array(context["perfusion"]["input_affine"], dtype=np.float64)
    maps_input = maps_to_grid(mask_phase_maps(phases, mask), grid, order=1)
    brain_input = maps_to_grid(mask[None].astype(np.float32), grid, order=0)[..., 0] >= 0.5
    maps_input = mask_phase_maps(maps_input, brain_input, channel_axis=-1)
    part = CollateralMetrics(
        **grade(np.transpose(phases, (3, 2, 1, 0)), np.transpose(mask, (2, 1, 0)), grid.grid_affine,
                context["perfusion"], trained_modalities, rule),
        registration=context["perfusion"].get("registration"),
        brain_volume_ml=round(volume_ml(brain_input, input_affine), 2),
        input_shape=list(grid.input_shape) + [context["perfusion"]["frames"]],
        input_orientation=context["perfusion"]["orientation"],
        frame_seconds=context["perfusion"]["frame_seconds"],
        network_grid=context["perfusion"]["network_grid"],
        contrast=context["perfusion"]["contrast"],
    )
    timings = {**context["timings_ms"], "network_perfusion": waited, "postprocess_collateral": timer.elapsed_ms()}
    return maps_input, brain_input.astype(np.uint8), part, timings

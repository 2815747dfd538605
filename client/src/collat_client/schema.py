"""Typed clinical inputs and the METRICS document as the SDK reads them.

The document's keys and its schema version are the shared contract's
(:mod:`collat_contract.metrics`), which the server builds the document through; these models
add what a reader checks (ranges, patterns, descriptions). ``tests/test_layout.py`` holds every
model's fields to the keys of its TypedDict there, the offline contract tests validate what the
serving code builds, and the integration tests what the real server returns, against these
models, so a drift fails CI. The clinical inputs' rules are the shared contract's
(:func:`collat_contract.clinical.check_clinical`), which the server applies too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collat_contract.clinical import CORE_LABEL, SIDES, check_clinical
from collat_contract.metrics import SCHEMA_VERSION, Decision, LesionStatus, Verdict
from collat_contract.names import PHASE_NAMES, PIPELINE_NAMES

Side = Literal[SIDES]  # type: ignore[valid-type]
Phase = Literal[PHASE_NAMES]  # type: ignore[valid-type]


class Clinical(BaseModel):
    """What the clinician knows. No identifiers: unknown fields are refused, here and by the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nihss: int | None = Field(description="NIH Stroke Scale, 0-42; null when not known (the core is measured, the "
                                          "hypoperfusion network, which reads it, is not run)")
    age: float | None = Field(default=None, description="years, 18-120; DAWN needs it")
    side: Side = "unknown"
    onset_to_imaging_min: float | None = Field(default=None, description="minutes, >= 0")
    dwi_b_value: float | None = Field(default=None, description="the DWI's b-value in s/mm^2 (from DICOM, or given)")

    @model_validator(mode="before")
    @classmethod
    def _shared_rules(cls, data: Any) -> Any:
        """Every rule is the contract's; a model built from keyword arguments goes through it too."""
        return check_clinical(data)




class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defuse3(_Strict):
    eligible: bool
    criteria: dict[Literal["core_le_70ml", "ratio_ge_1_8", "mismatch_ge_15ml"], bool]
    near_threshold: list[str]


class Dawn(_Strict):
    eligible: bool
    groups: dict[Literal["A", "B", "C"], bool]
    near_threshold: list[str]


class Contrast(_Strict):
    """The bolus the server found in the series (a series without one is refused): DCE rises, DSC dips."""

    kind: Literal["DCE", "DSC"]
    signal_change: float = Field(description="largest relative change of the brain's mean signal from baseline")


class Registration(_Strict):
    """How an image (the DWI, the perfusion series' baseline) reached MNI space: recognised as MNI already, or
    registered (affine)."""

    method: Literal["verified_mni", "affine"]
    similarity: float = Field(description="Dice of the registered brain outline with the template brain (gate)")
    contrast_similarity: float = Field(description="rank correlation with the MNI template over the covered brain")
    template_coverage: float = Field(ge=0, le=1, description="fraction of the template brain inside the scan")
    scale: float = Field(gt=0, description="head size relative to the template")
    seconds: float = Field(ge=0)
    native_to_mni: list[list[float]] = Field(min_length=4, max_length=4, description="4x4, scan RAS mm -> MNI mm")


class CollateralMetrics(_Strict):
    """The grade's fields are null together, with ``cps_withheld`` saying why (no registration to the template,
    or a modality the served network was not trained on); the maps are delivered either way."""

    ischaemic_side: Literal["left", "right"] | None
    side_source: Literal["clinical", "maps"] | None
    hypoperfused_fraction: dict[Phase, float] | None = Field(
        description="of the ischaemic MCA territory (template space), capillary / early venous / late venous")
    cps_estimate: int | None = Field(ge=0, le=5)
    cps_label: str | None
    cps_withheld: str | None = Field(description="why there is no grade; null when there is one")
    territory_voxels: int | None = Field(ge=0, description="4 mm template voxels of the territory and its mirror")
    registration: Registration | None = Field(description="the series' baseline registered to the MNI template")
    brain_volume_ml: float = Field(ge=0)
    input_shape: list[int] = Field(min_length=4, max_length=4)
    input_orientation: str = Field(pattern=r"^[RLAPSI]{3}$")
    frame_seconds: float = Field(gt=0)
    network_grid: str
    contrast: Contrast

    @property
    def grade_text(self) -> str:
        """The grade as a person reads it, or why there is none."""
        if self.cps_estimate is None:
            return f"CPS withheld: {self.cps_withheld}"
        return f"CPS estimate {self.cps_estimate} ({self.cps_label}), {self.ischaemic_side} side"


class ClinicalEcho(_Strict):
    nihss: int | None
    age: float | None
    side: Side
    onset_to_imaging_min: float | None
    dwi_b_value: float | None


class LesionRule(_Strict):
    """How the lesion was cut from the network's probability: SPEC's probability >= 0.5, or the weights' own
    volume calibration (their model card), which moves the cut so the volume matches what the network's volume,
    the core and the NIHSS stood for on its training phantoms."""

    calibrated: bool
    network_ml: float = Field(ge=0, description="the network's own lesion: probability >= 0.5, with the core")
    probability_threshold: float = Field(ge=0, le=1, description="where the lesion starts in probability")
    calibration: dict[str, Any] | None = Field(description="form, coefficients and what it was fitted on")


class LesionWithheld(_Strict):
    """Why no hypoperfusion lesion is reported. A ``withheld`` lesion failed a plausibility check: the lesion mask
    and probability outputs hold it for inspection only, and nothing draws it as a finding. ``not_run``: the
    network was not run; ``reasons`` name the input that would let it run."""

    status: LesionStatus
    reasons: list[str] = Field(min_length=1)
    drawn_ml: float | None = Field(ge=0, description="the withheld lesion as drawn; null when not run")

    @property
    def text(self) -> str:
        """One line a clinician reads in place of the volume."""
        what = "not assessed" if self.status == "not_run" else "withheld"
        return f"hypoperfusion {what}: {'; '.join(self.reasons)}"


class HypoperfusionMetrics(_Strict):
    core_ml: float = Field(ge=0, description="counted on the scan's own grid")
    hypoperfusion_ml: float | None = Field(ge=0, description="counted on the scan's own grid; null when "
                                                             "lesion_withheld says why")
    mismatch_ml: float | None
    mismatch_ratio: float | None = Field(ge=0, le=20)
    mismatch_ratio_capped: bool
    defuse3: Defuse3 | None = Field(description="null when a quality check withholding it failed "
                                                "(quality.decisions_withheld)")
    dawn: Dawn | None = Field(description="null without an age, or when a quality check withholding it failed")
    lesion_rule: LesionRule
    lesion_withheld: LesionWithheld | None = Field(description="null when the lesion is reported")
    side: Side
    side_inferred: bool
    adc_units_assumed: Literal["mm2/s", "1e-3 mm2/s", "1e-6 mm2/s"]
    input_shape: list[int] = Field(min_length=3, max_length=3)
    input_orientation: str = Field(pattern=r"^[RLAPSI]{3}$")
    registration: Registration
    core_artefacts_removed_ml: dict[str, float] = Field(
        description=f"mL each artefact rule of the core removed from the bare count of the {CORE_LABEL}")
    brain_volume_ml: float = Field(ge=0)
    clinical: ClinicalEcho

    @property
    def lesion_reported(self) -> bool:
        """Is there a hypoperfusion lesion to show as a finding (and volumes to read)?"""
        return self.lesion_withheld is None and self.hypoperfusion_ml is not None

    @property
    def volumes_text(self) -> str:
        """Core, hypoperfusion and ratio as one line, or the core and why the rest is withheld."""
        if not self.lesion_reported:
            why = self.lesion_withheld.text if self.lesion_withheld is not None else "hypoperfusion not reported"
            return f"core {self.core_ml:.1f} mL  {why}"
        return (f"core {self.core_ml:.1f} mL  hypoperfusion {self.hypoperfusion_ml:.1f} mL  "
                f"ratio {self.mismatch_ratio:.2f}")


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    name: str
    version: str
    preset: str | None = None
    sha256: str | None = None
    not_for_clinical_use: bool | None = Field(default=None, description="the weights' model card says so "
                                              "(phantom-trained demo weights); null when no card was found")


class QualityCheck(_Strict):
    name: str
    value: float | str | None
    limit: str
    verdict: Verdict
    reason: str = Field(description="what a failure means for the reader; empty when passed")
    withholds: list[Decision] = Field(description="the decisions a failure withholds")


class Quality(_Strict):
    """Every check the inputs went through; any failure withholds the decisions it names (``withholds``), with its
    reason listed here."""

    checks: list[QualityCheck]
    decisions_withheld: list[str]

    def withheld(self, decision: Decision) -> bool:
        """Did a failed check withhold ``decision``?"""
        return any(c.verdict == "fail" and decision in c.withholds for c in self.checks)


class Metrics(_Strict):
    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    pipeline: Literal[PIPELINE_NAMES]  # type: ignore[valid-type]
    collateral: CollateralMetrics | None
    hypoperfusion: HypoperfusionMetrics | None
    near_threshold: list[str]
    quality: Quality
    models: dict[str, ModelInfo]
    timings_ms: dict[str, float]
    warnings: list[str]
    disclaimer: str

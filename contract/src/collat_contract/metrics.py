"""The METRICS document every pipeline returns: its keys, written once for the server and the SDK.

The server builds the document through these TypedDicts (``collat_ensemble.serving.metrics``
and the part builders it calls); the SDK's pydantic models (``collat_client.schema``) read it
and add what a reader checks (ranges, patterns, descriptions). ``tests/test_layout.py`` holds
every model's fields to the keys of its TypedDict here, and the offline contract tests hold the
document the serving code builds to the same keys, so no side adds, drops or renames a field
alone. A change of keys changes :data:`SCHEMA_VERSION` with it.

No ``from __future__ import annotations`` here: ``NotRequired`` is only seen by ``TypedDict``
(``__required_keys__``) when the annotations are evaluated.
"""

from typing import Any, Literal, NotRequired, TypedDict

SCHEMA_VERSION = "1.5"

Verdict = Literal["pass", "fail", "unknown"]  # a quality check's
# What a failed quality check may withhold: the two treatment decisions, and the hypoperfusion lesion itself (its
# volume, the mismatch and everything drawn from it), when the network's output is not one to be trusted.
Decision = Literal["defuse3", "dawn", "hypoperfusion"]
LesionStatus = Literal["withheld", "not_run"]


class Contrast(TypedDict):
    """The bolus found in the perfusion series: DCE rises, DSC dips (a series without one is refused)."""

    kind: str  # "DCE" | "DSC"
    signal_change: float  # largest relative change of the brain's mean signal from baseline


class Registration(TypedDict):
    """How an image reached MNI space: recognised as MNI already ("verified_mni") or registered ("affine")."""

    method: str
    similarity: float
    contrast_similarity: float
    template_coverage: float
    scale: float
    seconds: float
    native_to_mni: list[list[float]]  # 4x4, scan RAS mm -> MNI mm


class CollateralGrade(TypedDict):
    """The CPS grade, or every field null with ``cps_withheld`` saying why."""

    ischaemic_side: str | None  # "left" | "right"
    side_source: str | None  # "clinical" | "maps"
    hypoperfused_fraction: dict[str, float] | None  # per CPS phase (capillary, early_venous, late_venous)
    cps_estimate: int | None
    cps_label: str | None
    territory_voxels: int | None
    cps_withheld: str | None


class CollateralMetrics(CollateralGrade):
    """The ``collateral`` section: the grade and what the series was."""

    registration: Registration | None
    brain_volume_ml: float
    input_shape: list[int]  # x, y, z, t
    input_orientation: str
    frame_seconds: float
    network_grid: str
    contrast: Contrast


class Defuse3(TypedDict):
    eligible: bool
    criteria: dict[str, bool]  # core_le_70ml, ratio_ge_1_8, mismatch_ge_15ml
    near_threshold: list[str]


class Dawn(TypedDict):
    eligible: bool
    groups: dict[str, bool]  # A, B, C
    near_threshold: list[str]


class LesionCalibration(TypedDict):
    """A U-Net's lesion volume calibration (its model card's); the SDK reads it as a plain mapping."""

    form: str
    coefficients: dict[str, float]  # intercept, network, core, nihss
    fitted_on: str


class LesionRule(TypedDict):
    """How the lesion was cut from the network's probability."""

    calibrated: bool
    network_ml: float
    probability_threshold: float
    calibration: LesionCalibration | None


class LesionWithheld(TypedDict):
    """Why there is no hypoperfusion lesion to report. ``withheld``: the network ran and its lesion failed a
    plausibility check; the lesion mask and probability outputs still hold it, for inspection only, never as a
    finding. ``not_run``: the network was not run (``reasons`` say which input would let it run)."""

    status: LesionStatus
    reasons: list[str]
    drawn_ml: float | None  # the withheld lesion as the network drew it (None when not run)


class HypoperfusionVolumes(TypedDict):
    """What the lesion assessment gives (``collat_ensemble.hypoperfusion``): volumes, mismatch, decisions. The
    hypoperfusion volume and the mismatch are null when ``lesion_withheld`` says why."""

    core_ml: float
    hypoperfusion_ml: float | None
    mismatch_ml: float | None
    mismatch_ratio: float | None
    mismatch_ratio_capped: bool
    defuse3: Defuse3 | None  # null when a failed quality check withholds it
    dawn: Dawn | None  # null without an age, or when a failed quality check withholds it
    lesion_rule: LesionRule
    lesion_withheld: LesionWithheld | None  # null when the lesion is reported


class ClinicalEcho(TypedDict):
    """The clinical inputs as the server read them (``collat_contract.clinical.FIELDS``)."""

    nihss: int
    age: float | None
    side: str
    onset_to_imaging_min: float | None
    dwi_b_value: float | None


class HypoperfusionMetrics(HypoperfusionVolumes):
    """The ``hypoperfusion`` section: the assessment and what the scan was."""

    side: str  # "left" | "right" | "bilateral", or "unknown" when none was given and there is no core to read it from
    side_inferred: bool
    adc_units_assumed: str  # "mm2/s" | "1e-3 mm2/s" | "1e-6 mm2/s"
    input_shape: list[int]
    input_orientation: str
    registration: Registration
    core_artefacts_removed_ml: dict[str, float]  # artefact rule -> mL
    brain_volume_ml: float
    clinical: ClinicalEcho


class QualityCheck(TypedDict):
    name: str
    value: float | str | None
    limit: str
    verdict: Verdict
    reason: str  # what a failure means for the reader; empty when passed
    withholds: list[Decision]


class Quality(TypedDict):
    checks: list[QualityCheck]
    decisions_withheld: list[str]  # the failed checks' reasons


class ModelInfo(TypedDict):
    """A served model as the SDK types it; the server may add :class:`ModelProvenance`'s keys."""

    name: str
    version: str
    preset: NotRequired[str]
    sha256: NotRequired[str]
    not_for_clinical_use: NotRequired[bool]


class ModelProvenance(ModelInfo, total=False):
    """What else the model's sidecars (``model.json``, ``model.plan.json``) may say; the SDK keeps these as
    extra fields of its ``ModelInfo``."""

    weights: str
    checkpoint: str
    tensorrt_version: str
    gpu: str
    dsc_conversion: str
    card_sha256: str  # an imported network's card (collat_contract.network_card)
    modalities: list[str]
    lesion_calibration: dict[str, Any]  # read at load by the U-Net's postprocessing, which removes it
    training_domain: dict[str, Any]  # read at load by the U-Net's postprocessing, which removes it
    cps_rule: dict[str, Any]  # read at load by the 3D-MROD-Net's postprocessing, which removes it


class MetricsDocument(TypedDict):
    """The whole document (UTF-8 JSON in the METRICS tensor)."""

    schema_version: str  # SCHEMA_VERSION
    pipeline: str  # one of collat_contract.names.PIPELINE_NAMES
    collateral: CollateralMetrics | None
    hypoperfusion: HypoperfusionMetrics | None
    near_threshold: list[str]
    quality: Quality
    models: dict[str, ModelProvenance]
    timings_ms: dict[str, float]
    warnings: list[str]
    disclaimer: str

"""Typed clinical inputs and the METRICS document: the one home of the schema the server must satisfy.

The server (``collat_ensemble.serving.metrics``) writes plain JSON; the integration tests
validate what the real server returns against these models, so a drift fails CI.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Side = Literal["left", "right", "bilateral", "unknown"]


class Clinical(BaseModel):
    """What the clinician knows. No identifiers: the server refuses unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nihss: int = Field(ge=0, le=42, description="NIH Stroke Scale, 0-42")
    age: float | None = Field(default=None, ge=18, le=120, description="years; DAWN needs it")
    side: Side = "unknown"
    onset_to_imaging_min: float | None = Field(default=None, ge=0)


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


class CollateralMetrics(_Strict):
    ischaemic_side: Literal["left", "right"]
    side_source: Literal["clinical", "maps"]
    hypoperfused_fraction: dict[Literal["arterial", "capillary", "early_venous", "late_venous", "delay"], float]
    cps_estimate: int = Field(ge=0, le=5)
    cps_label: str
    territory_voxels: int = Field(ge=0)
    brain_volume_ml: float = Field(ge=0)
    input_shape: list[int] = Field(min_length=4, max_length=4)
    input_orientation: str = Field(pattern=r"^[RLAPSI]{3}$")
    frame_seconds: float = Field(gt=0)
    network_grid: str


class ClinicalEcho(_Strict):
    nihss: int
    age: float | None
    side: Side
    onset_to_imaging_min: float | None


class HypoperfusionMetrics(_Strict):
    core_ml: float = Field(ge=0)
    hypoperfusion_ml: float = Field(ge=0)
    mismatch_ml: float
    mismatch_ratio: float = Field(ge=0, le=20)
    mismatch_ratio_capped: bool
    defuse3: Defuse3
    dawn: Dawn | None
    side: Literal["left", "right", "bilateral"]
    side_inferred: bool
    adc_units_assumed: Literal["mm2/s", "1e-6 mm2/s"]
    input_shape: list[int] = Field(min_length=3, max_length=3)
    input_orientation: str = Field(pattern=r"^[RLAPSI]{3}$")
    clinical: ClinicalEcho


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    name: str
    version: str
    preset: str | None = None
    sha256: str | None = None


class Metrics(_Strict):
    schema_version: Literal["1.0"]
    pipeline: Literal["collateral_pipeline", "hypoperfusion_pipeline", "stroke_triage"]
    collateral: CollateralMetrics | None
    hypoperfusion: HypoperfusionMetrics | None
    near_threshold: list[str]
    models: dict[str, ModelInfo]
    timings_ms: dict[str, float]
    warnings: list[str]
    disclaimer: str

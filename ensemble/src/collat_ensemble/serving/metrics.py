"""The METRICS document every pipeline returns (UTF-8 JSON).

Its keys' one home is the shared contract (:mod:`collat_contract.metrics`): the document and
every part of it are built here and by the part builders through its TypedDicts, and the SDK's
models (``collat_client.schema``), which the integration tests validate the real server's
documents against, are held to the same keys. The document carries no patient identifiers:
only numbers derived from the voxels, the clinical scores the request gave, model
names/versions and timings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from collat_contract.metrics import (
    SCHEMA_VERSION,
    CollateralMetrics,
    HypoperfusionMetrics,
    MetricsDocument,
    ModelProvenance,
    Quality,
)

from .. import quality

DISCLAIMER = ("Research software. The served weights may be phantom-trained demo weights: "
              "not for clinical decisions.")


class CollateralPart(CollateralMetrics, total=False):
    """A step's collateral section before :func:`document`, which moves its quality checks (if any) to the
    document's own ``quality`` section."""

    quality: Quality


class HypoperfusionPart(HypoperfusionMetrics):
    """The diffusion step's hypoperfusion section with its quality checks, before :func:`document`."""

    quality: Quality


def _section(part: Mapping[str, Any]) -> dict[str, Any]:
    """A part as the document carries it: without its ``quality``, which moves to the document's own section."""
    return {k: v for k, v in part.items() if k != "quality"}


def near_threshold_flags(collateral: CollateralMetrics | None, hypoperfusion: HypoperfusionMetrics | None,
                         ) -> list[str]:
    """Dotted names of the decision inputs lying within 10 % of a decision threshold."""
    flags: list[str] = []
    if hypoperfusion is not None:
        if hypoperfusion["defuse3"] is not None:
            flags += [f"defuse3.{n}" for n in hypoperfusion["defuse3"]["near_threshold"]]
        if hypoperfusion["dawn"] is not None:
            flags += [f"dawn.{n}" for n in hypoperfusion["dawn"]["near_threshold"]]
    return flags


def document(pipeline: str, *, collateral: CollateralPart | None = None,
             hypoperfusion: HypoperfusionPart | None = None, timings_ms: dict[str, float],
             models: dict[str, ModelProvenance], warnings: list[str] | None = None) -> MetricsDocument:
    """The document; a part's ``quality`` checks move to the top-level ``quality`` section."""
    warnings = list(warnings or [])
    checks = [c for part in (collateral, hypoperfusion) if part is not None
              for c in part.get("quality", {}).get("checks", [])]
    collateral_section = None if collateral is None else cast(CollateralMetrics, _section(collateral))
    hypoperfusion_section = None if hypoperfusion is None else cast(HypoperfusionMetrics, _section(hypoperfusion))
    if hypoperfusion_section is not None:
        if hypoperfusion_section["side_inferred"]:
            warnings.append(f"stroke side not given: inferred as {hypoperfusion_section['side']} from the ADC core")
        warnings.append(f"ADC read as {hypoperfusion_section['adc_units_assumed']}")
    if collateral_section is not None and collateral_section["side_source"] == "maps":
        warnings.append(f"ischaemic side for CPS taken from the maps: {collateral_section['ischaemic_side']}")
    return MetricsDocument(
        schema_version=SCHEMA_VERSION,
        pipeline=pipeline,
        collateral=collateral_section,
        hypoperfusion=hypoperfusion_section,
        near_threshold=near_threshold_flags(collateral_section, hypoperfusion_section),
        quality=quality.summary(checks),
        models=models,
        timings_ms=timings_ms,
        warnings=warnings,
        disclaimer=DISCLAIMER,
    )


def merge(pipeline: str, collateral_doc: MetricsDocument, hypoperfusion_doc: MetricsDocument) -> MetricsDocument:
    """One document for ``stroke_triage`` from the two pipelines' documents (each has its own section)."""
    collateral = cast(CollateralMetrics, collateral_doc["collateral"])
    hypo = cast(HypoperfusionMetrics, hypoperfusion_doc["hypoperfusion"])
    warnings = [w for w in collateral_doc["warnings"] + hypoperfusion_doc["warnings"]]
    graded_side = collateral["ischaemic_side"]  # None when the grade was withheld
    if graded_side is not None and graded_side != hypo["side"] and hypo["side"] in ("left", "right"):
        warnings.append(f"the collateral maps point to the {collateral['ischaemic_side']} hemisphere but the "
                        f"diffusion side is {hypo['side']}: check the images")
    collateral_part: CollateralPart = {**collateral, "quality": collateral_doc["quality"]}
    hypoperfusion_part: HypoperfusionPart = {**hypo, "quality": hypoperfusion_doc["quality"]}
    merged = document(pipeline, collateral=collateral_part, hypoperfusion=hypoperfusion_part,
                      timings_ms={**collateral_doc["timings_ms"], **hypoperfusion_doc["timings_ms"]},
                      models={**collateral_doc["models"], **hypoperfusion_doc["models"]})
    merged["warnings"] = list(dict.fromkeys(warnings))
    return merged


def network_model_info(repository: Path, name: str, version: str = "1") -> ModelProvenance:
    """Name, version and provenance of a network model, read from its version's folder in the repository.

    ``model.json`` (written by ``collat-export onnx``) gives the preset and the weights'
    digest; a TensorRT deployment adds the engine sidecar. Missing files are not an error:
    the document then says only what is known. Every key it may write is one of
    :class:`~collat_contract.metrics.ModelProvenance`'s.
    """
    info = ModelProvenance(name=name, version=version)
    folder = repository / name / version
    for sidecar in ("model.json", "model.plan.json"):
        path = folder / sidecar
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for key in ("preset", "sha256", "weights", "checkpoint", "not_for_clinical_use", "tensorrt_version",
                        "gpu", "dsc_conversion", "card_sha256"):
                if key in data and isinstance(data[key], str | int | float):
                    info[key] = data[key]  # type: ignore[literal-required]
            modalities = data.get("modalities")
            if isinstance(modalities, list) and all(isinstance(m, str) for m in modalities):
                info["modalities"] = modalities
            for key in ("lesion_calibration", "training_domain", "cps_rule"):  # read by the postprocessing at load
                if isinstance(data.get(key), dict):
                    info[key] = data[key]  # type: ignore[literal-required]
    return info

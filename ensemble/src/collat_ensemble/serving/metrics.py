"""The METRICS document every pipeline returns (UTF-8 JSON).

Its schema's one home is the client SDK (``collat_client.schema``): the server writes plain
dicts here and the integration tests validate what the real server returns against the SDK's
models. The document carries no patient identifiers: only numbers derived from the voxels,
the clinical scores the request gave, model names/versions and timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import quality

SCHEMA_VERSION = "1.3"
DISCLAIMER = ("Research software. The served weights may be phantom-trained demo weights: "
              "not for clinical decisions.")


def near_threshold_flags(collateral: dict | None, hypoperfusion: dict | None) -> list[str]:
    """Dotted names of the decision inputs lying within 10 % of a decision threshold."""
    flags: list[str] = []
    if hypoperfusion is not None:
        if hypoperfusion["defuse3"] is not None:
            flags += [f"defuse3.{n}" for n in hypoperfusion["defuse3"]["near_threshold"]]
        if hypoperfusion["dawn"] is not None:
            flags += [f"dawn.{n}" for n in hypoperfusion["dawn"]["near_threshold"]]
    return flags


def document(pipeline: str, *, collateral: dict | None = None, hypoperfusion: dict | None = None,
             timings_ms: dict[str, float], models: dict[str, dict], warnings: list[str] | None = None) -> dict:
    """The document; a part's ``quality`` checks move to the top-level ``quality`` section."""
    warnings = list(warnings or [])
    checks = [c for part in (collateral, hypoperfusion) if part is not None
              for c in part.get("quality", {}).get("checks", [])]
    collateral, hypoperfusion = (None if part is None else {k: v for k, v in part.items() if k != "quality"}
                                 for part in (collateral, hypoperfusion))
    if hypoperfusion is not None:
        if hypoperfusion["side_inferred"]:
            warnings.append(f"stroke side not given: inferred as {hypoperfusion['side']} from the ADC core")
        warnings.append(f"ADC read as {hypoperfusion['adc_units_assumed']}")
    if collateral is not None and collateral["side_source"] == "maps":
        warnings.append(f"ischaemic side for CPS taken from the maps: {collateral['ischaemic_side']}")
    return {
        "schema_version": SCHEMA_VERSION,
        "pipeline": pipeline,
        "collateral": collateral,
        "hypoperfusion": hypoperfusion,
        "near_threshold": near_threshold_flags(collateral, hypoperfusion),
        "quality": quality.summary(checks),
        "models": models,
        "timings_ms": timings_ms,
        "warnings": warnings,
        "disclaimer": DISCLAIMER,
    }


def merge(pipeline: str, collateral_doc: dict, hypoperfusion_doc: dict) -> dict:
    """One document for ``stroke_triage`` from the two pipelines' documents."""
    collateral = collateral_doc["collateral"]
    hypo = hypoperfusion_doc["hypoperfusion"]
    warnings = [w for w in collateral_doc["warnings"] + hypoperfusion_doc["warnings"]]
    graded_side = collateral["ischaemic_side"]  # None when the grade was withheld
    if graded_side is not None and graded_side != hypo["side"] and hypo["side"] in ("left", "right"):
        warnings.append(f"the collateral maps point to the {collateral['ischaemic_side']} hemisphere but the "
                        f"diffusion side is {hypo['side']}: check the images")
    merged = document(pipeline, collateral={**collateral, "quality": collateral_doc["quality"]},
                      hypoperfusion={**hypo, "quality": hypoperfusion_doc["quality"]},
                      timings_ms={**collateral_doc["timings_ms"], **hypoperfusion_doc["timings_ms"]},
                      models={**collateral_doc["models"], **hypoperfusion_doc["models"]})
    merged["warnings"] = list(dict.fromkeys(warnings))
    return merged


def network_model_info(repository: Path, name: str) -> dict[str, Any]:
    """Name, version and provenance of a network model, read from its folder in the repository.

    ``model.json`` (written by ``collat-export onnx``) gives the preset and the weights'
    digest; a TensorRT deployment adds the engine sidecar. Missing files are not an error:
    the document then says only what is known.
    """
    info: dict[str, Any] = {"name": name, "version": "1"}
    folder = repository / name / "1"
    for sidecar in ("model.json", "model.plan.json"):
        path = folder / sidecar
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for key in ("preset", "sha256", "weights", "checkpoint", "not_for_clinical_use", "tensorrt_version",
                        "gpu", "dsc_conversion"):
                if key in data and isinstance(data[key], str | int | float):
                    info[key] = data[key]
            modalities = data.get("modalities")
            if isinstance(modalities, list) and all(isinstance(m, str) for m in modalities):
                info["modalities"] = modalities
            for key in ("lesion_calibration", "training_domain"):  # read by the postprocessing at load
                if isinstance(data.get(key), dict):
                    info[key] = data[key]
    return info

"""Whether a network may run in a lower CPU precision (BF16; INT8 where ``collat-train quantize`` made its IR): the
served path run in FP32 and in each lower precision on the same held-out phantom series, and the difference measured
where it matters.

The steps are the server's own (``collat_ensemble.serving``: registration, preprocessing, postprocessing, quality
checks) and the network runs in OpenVINO exactly as the served ``network_model`` runs it; only Triton is left out.
A precision is accepted when, on at least :data:`MIN_SERIES` series, the maps' mean R^2 and SSIM against the
reference stay within :data:`MAX_METRIC_LOSS` of FP32's, the lesion Dice likewise, and not one CPS grade, DEFUSE 3
or DAWN decision, or withheld-or-not verdict, changes. The record goes into the model card (``precision``); the
export copies ``accepted`` into ``model.json``, where the server reads it.
"""

from __future__ import annotations

import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collat_client.imaging.evaluation import dice, phase_metrics
from collat_ensemble.phantom import generate_case
from collat_ensemble.server.network_model import OpenVINORunner, cpu_capabilities
from collat_ensemble.server.repository import STATIC_SHAPES
from collat_ensemble.serving import diffusion, perfusion
from collat_ensemble.template import default_template
from collat_ensemble.territory import CPSRule

from .checkpoint import load_checkpoint
from .io_spec import network_io
from .onnx_export import export_onnx, trained_modalities
from .training.data import case_kind, clinical_side

MIN_SERIES = 200
MAX_METRIC_LOSS = 0.005
LOWER = ("bf16", "int8")
# What the CPU must report for each (``network_model.cpu_capabilities``): INT8 is measured, and served, with VNNI only.
NEEDS = {"bf16": {"BF16"}, "int8": {"INT8", "VNNI"}}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mrod_series(runners: dict[str, OpenVINORunner], preset, seed: int, template, modalities,
                 rule: CPSRule | None) -> dict[str, dict]:
    g = preset.geometry
    grid = perfusion.NetworkGrid(g.channels, float(g.frame_seconds), g.slices, g.height, g.width)
    case = generate_case(seed, modality="dsc" if seed % 2 else "dce")
    network_input, mask, context = perfusion.preprocess(case.perfusion, case.perfusion_affine,
                                                        np.array([case.frame_seconds]), grid, template)
    out = {}
    for precision, runner in runners.items():
        start = time.perf_counter()
        phases = runner.run({"MROD_INPUT": network_input})[0]
        seconds = time.perf_counter() - start
        maps, _, part, _ = perfusion.postprocess(phases, mask, copy.deepcopy(context), modalities, rule)
        table = phase_metrics(maps, case.reference_maps, case.brain_mask)["mean"]
        out[precision] = {"r2": table["r2"], "ssim": table["ssim"], "cps": part["cps_estimate"],
                          "seconds": seconds}
    return out


def _hypo_series(runners: dict[str, OpenVINORunner], seed: int, template, calibration, domain) -> dict[str, dict]:
    case = generate_case(seed, space="native", kind=case_kind(seed, "mixed"))
    clinical = {"nihss": case.nihss, "age": float(case.age), "side": clinical_side(case)}
    slabs, nihss, core, brain, context = diffusion.preprocess(case.dwi, case.adc, case.diffusion_affine,
                                                              case.diffusion_affine, clinical, template)
    out = {}
    for precision, runner in runners.items():
        start = time.perf_counter()
        probabilities = runner.run({"IMAGE": slabs, "NIHSS": nihss})[0]
        seconds = time.perf_counter() - start
        _, lesion, _, part, _ = diffusion.postprocess(probabilities, core, brain, copy.deepcopy(context),
                                                      calibration, domain)
        out[precision] = {"dice": dice(lesion > 0, case.lesion), "seconds": seconds,
                          "defuse3": None if part["defuse3"] is None else part["defuse3"]["eligible"],
                          "dawn": None if part["dawn"] is None else part["dawn"]["eligible"],
                          "withheld": part["lesion_withheld"] is not None}
    return out


def _verdict(rows: list[dict[str, dict]], precision: str, model: str) -> dict[str, Any]:
    """The lower precision against FP32 over the series: metric losses, changed decisions, accepted or why not."""
    def mean(p: str, key: str) -> float:
        return float(np.mean([r[p][key] for r in rows]))

    if model == "mrod":
        losses = {m: mean("fp32", m) - mean(precision, m) for m in ("r2", "ssim")}
        changed = {"cps": sum(r["fp32"]["cps"] != r[precision]["cps"] for r in rows)}
    else:
        median = {p: statistics.median(r[p]["dice"] for r in rows) for p in ("fp32", precision)}
        losses = {"dice": median["fp32"] - median[precision]}
        changed = {k: sum(r["fp32"][k] != r[precision][k] for r in rows) for k in ("defuse3", "dawn", "withheld")}
    speed = mean("fp32", "seconds") / max(mean(precision, "seconds"), 1e-9)
    reasons = [f"{k} {v:+.4f} below FP32 (limit {MAX_METRIC_LOSS})" for k, v in losses.items() if v > MAX_METRIC_LOSS]
    reasons += [f"{v} {k} changed" for k, v in changed.items() if v]
    if len(rows) < MIN_SERIES:
        reasons.append(f"measured on {len(rows)} series, fewer than the {MIN_SERIES} acceptance needs")
    return {"loss_vs_fp32": {k: round(v, 5) for k, v in losses.items()}, "changed": changed,
            "speed_vs_fp32": round(speed, 2), "accepted": not reasons, "reasons": reasons}


def measure_precisions(checkpoint: Path, seeds: Sequence[int], *, threads: int = 0,
                       progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The card's ``precision`` record for the weights in ``checkpoint`` (their ``model``: mrod or hypo)."""
    from collat_ensemble.hypoperfusion import VolumeCalibration
    from collat_ensemble.quality import TrainingDomain

    from .onnx_export import lesion_calibration, served_cps_rule, shipped_int8, training_domain

    caps = cpu_capabilities()
    int8 = shipped_int8(checkpoint)
    lower = [p for p in LOWER if NEEDS[p] <= set(caps) and (p != "int8" or int8 is not None)]
    loaded = load_checkpoint(checkpoint)
    model = loaded.preset.model
    template = default_template()
    calibration = lesion_calibration(str(checkpoint), model)
    domain = training_domain(str(checkpoint), model)
    rule = served_cps_rule(checkpoint) if model == "mrod" else None  # the CPS is read as the server reads it
    calibration = None if calibration is None else VolumeCalibration.from_dict(calibration)
    domain = None if domain is None else TrainingDomain.from_dict(domain)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(loaded.network, loaded.preset, tmp, checkpoint=str(checkpoint))
        outputs = ["PHASES"] if model == "mrod" else ["LESION_PROB"]
        static = STATIC_SHAPES.get(network_io(loaded.preset).triton_name, False)  # compiled as served
        runners = {p: OpenVINORunner(str(int8 if p == "int8" else Path(tmp) / "model.onnx"), threads, outputs, p,
                                     static) for p in ("fp32", *lower)}
        rows = []
        for i, seed in enumerate(seeds, 1):
            rows.append(_mrod_series(runners, loaded.preset, seed, template, trained_modalities(str(checkpoint), model),
                                     rule)
                        if model == "mrod" else _hypo_series(runners, seed, template, calibration, domain))
            if i % 10 == 0 or i == len(seeds):
                progress(f"{i}/{len(seeds)} series")
    record: dict[str, Any] = {
        "measured_on": {"series": len(rows), "seeds": [min(seeds), max(seeds)], "cpu": _cpu_name(),
                        "cpu_capabilities": caps, "openvino": runners["fp32"].version,
                        "path": "the served steps (registration, preprocessing, postprocessing, quality checks) with "
                                "the network in OpenVINO, Triton left out"},
        "limits": {"max_metric_loss": MAX_METRIC_LOSS, "decisions_changed": 0, "min_series": MIN_SERIES},
        "fp32": {"seconds_per_series": round(float(np.mean([r["fp32"]["seconds"] for r in rows])), 3)},
    }
    accepted = ["fp32"]
    for p in lower:
        record[p] = _verdict(rows, p, model)
        if record[p]["accepted"]:
            accepted.append(p)
    missing = [p for p in LOWER if p not in lower]
    if missing:
        record["note"] = "not measured here: " + "; ".join(
            "int8 (no INT8 IR made from these weights: collat-train quantize)" if p == "int8" and int8 is None
            else f"{p} (this CPU has no {' / '.join(sorted(NEEDS[p]))} units)" for p in missing)
    record["accepted"] = accepted
    return record

"""Model cards (Markdown + JSON) that travel with every trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from collat_ensemble.contrast import trained_dsc_conversion

DISCLAIMER = ("Trained on synthetic digital-phantom cases for pipeline validation. "
              "NOT for clinical use: it has never seen a patient scan.")


def _version(evaluation: dict) -> str:
    """", phantom version N" where the evaluation record says which version its cases were drawn from."""
    return f", phantom version {evaluation['phantom_version']}" if evaluation.get("phantom_version") else ""


def _table(evaluation: dict) -> str:
    return "\n".join(f"| {k} | {v:.4f} |" for k, v in evaluation.get("summary", {}).items())


def _modalities(training: dict) -> str:
    kinds = training.get("modalities", ["dce"])
    text = " and ".join(k.upper() for k in kinds)
    if "dsc" in kinds:
        text += (" (DSC as served: converted to its Delta R2* enhancement before the network, conversion version "
                 f"{trained_dsc_conversion(training)})")
    if training.get("motion") == "mixed":
        text += "; half the series moving between frames"
    if training.get("pose") == "mixed":
        text += "; two in three with the head turned in-plane (up to 15 degrees)"
    return text


def _size_bands(evaluation: dict) -> str:
    """Volume error and DEFUSE 3 accuracy per true lesion size, served (calibrated) and the network's own."""
    bands = evaluation.get("by_size")
    if not bands:
        return ""
    rows = "\n".join(f"| {name} | {b['cases']} | {b['mean_volume_error_ml']:+.1f} | "
                     f"{b['mean_abs_volume_error_ml']:.1f} | {b['defuse3_accuracy']:.3f} | "
                     f"{b['network_mean_volume_error_ml']:+.1f} | "
                     f"{b['network_defuse3_accuracy']:.3f} |" for name, b in bands.items())
    return f"""
By true lesion size (served lesion, and the network's own threshold-0.5 lesion):

| lesion | cases | volume error mL | abs error mL | DEFUSE 3 accuracy | network volume error mL | network DEFUSE 3 |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}
"""


def _calibration_section(calibration: dict) -> str:
    c = calibration.get("coefficients", {})
    return f"""
## Lesion volume calibration (applied by the server)

`{calibration.get('form')}` with intercept {c.get('intercept', 0):.4f}, network {c.get('network', 0):.4f},
core {c.get('core', 0):.4f}, nihss {c.get('nihss', 0):.4f}; fitted on {calibration.get('fitted_on')}
(`collat-train fit-volume`). The served lesion takes the calibrated volume in the network's order of probability
(never less than the ADC core, never a voxel below probability 0.05); METRICS `hypoperfusion.lesion_rule` says
so and gives the network's own volume beside it.
"""


def _kinds_section(evaluation: dict) -> str:
    """Every kind of case phantom version 4 draws, scored as served (plausibility checks included)."""
    rows = "\n".join(
        f"| {kind} | {f['cases']} | {f['median_dice']:.3f} | {f['mean_volume_error_ml']:+.1f} | "
        f"{f['under_10ml_fraction']:.0%} | {f['withheld_fraction']:.0%} | "
        f"{f['served_under_10ml_or_withheld_fraction']:.0%} | {f['defuse3_accuracy']:.3f} | {f['defuse3_false_yes']} "
        f"({f['served_defuse3_false_yes']}) |" for kind, f in evaluation.get("by_kind", {}).items())
    first, last = evaluation.get("seeds", [0, 0])[0], evaluation.get("seeds", [0, 0])[-1]
    return f"""
## Held-out evaluation by kind of case, native space ({evaluation.get('cases')} phantom cases, seeds {first}-{last})

Phantom version 4's mix of what hospitals scan, each case told the side its symptoms give (a mimic's and an old
infarct's too; emboli "bilateral"). "Under 10 mL": the network's lesion; "withheld": by the server's plausibility
checks; "served": under 10 mL or withheld. DEFUSE 3 false "yes": the network's (the served, in brackets).

| kind | cases | median Dice | volume error (mL) | under 10 mL | withheld | served | DEFUSE 3 accuracy | false yes |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Reproduce: `collat-train evaluate --model hypo --checkpoint checkpoint.pt --space native --kinds mixed --seeds \
{first}-{last}`
"""


def _domain_section(domain: dict) -> str:
    core = domain.get("core_ml", {})
    envelope = domain.get("lesion_ml_by_core", {})
    ladder = ", ".join(f"<= {k} mL: {v:.0f} mL" for k, v in envelope.items())
    gate = f"""* Largest training lesion around cores up to each size: {ladder}
* A lesion larger than 1.25 times the largest the weights were trained on around a core like the scan's (+ 5 mL) is
  withheld as outside what the network was trained on (quality check `hypoperfusion_in_training_domain`): its volume,
  the mismatch and DEFUSE 3 are null, the mask kept for inspection only.""" if envelope else """* A scan whose core is
  under half the smallest gets its core but no hypoperfusion lesion and no DEFUSE 3 decision (quality check
  `core_in_training_domain`): these weights never saw a diffusion scan without a stroke core."""
    return f"""
## Training domain (read by the server's quality gates)

* ADC core of the training cases: {core.get('min', 0):.2f} mL smallest, {core.get('p05', 0):.2f} mL 5th percentile,
  {core.get('median', 0):.1f} mL median, {core.get('max', 0):.1f} mL largest
* Cases: {domain.get('cases')}
* Measured on: {domain.get('measured_on')} (by the training run, or `collat-train domain` from its card)
{gate}
"""


def _cps_section(result: dict) -> str:
    rows = []
    for source in ("network", "conventional"):
        for group, a in result.get(source, {}).items():
            if isinstance(a, dict):
                rows.append(f"| {source} | {group} | {a['cases']} | {a['exact']:.3f} | {a['within_one']:.3f} | "
                            f"{a['weighted_kappa']:.3f} |")
    ratios = ", ".join(f"{k} {v:g}" for k, v in result.get("rule", {}).get("ratios", {}).items())
    matrix = result.get("network", {}).get("all", {}).get("confusion")
    per_grade = result.get("network", {}).get("all", {}).get("per_grade", {})
    grade_rows = "\n".join(f"| {g} | {a['cases']} | {a['exact']:.3f} | {a['within_one']:.3f} |"
                           for g, a in per_grade.items())
    grade_table = f"""
Per phantom grade (the network):

| grade | series | exact | within one |
| ---: | ---: | ---: | ---: |
{grade_rows}
""" if per_grade else ""
    version = f", phantom version {result['phantom_version']}" if result.get("phantom_version") else ""
    return f"""
## Collateral grade (CPS) on held-out phantoms (seeds {result.get('seeds')}, each in DCE and DSC, odd seeds \
moving{version})

Served path: registered to the MNI template, graded in template space with the fitted rule (ratios {ratios};
fitted on {result.get('rule', {}).get('fitted_on') or 'unknown'}).
The conventional map (`collat_ensemble.phases`) is graded by the same rule, to show what the network adds.
Phantom grades 0-5: {result.get('truth_grades')}. Weighted kappa: quadratic weights.

| maps | series | cases | exact | within one | weighted kappa |
| --- | --- | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Confusion of the network's grade (rows: phantom grade 0-5, columns: estimate): {matrix}
{grade_table}
Reproduce: `collat-train evaluate --model cps --checkpoint checkpoint.pt --seeds {result.get('seeds', [0, 0])[0]}-\
{result.get('seeds', [0, 0])[-1]} --workers 2`
"""


def _precision_section(record: dict) -> str:
    """BF16 against FP32 on the served path, and which precisions the server may use for these weights."""
    on = record.get("measured_on", {})
    lines = ["\n## CPU precision\n",
             f"Measured on {on.get('series')} held-out series (seeds {on.get('seeds')}), {on.get('cpu')}, OpenVINO "
             f"{on.get('openvino')}: {on.get('path')}. FP32: {record.get('fp32', {}).get('seconds_per_series')} s "
             "per series in the network.", ""]
    for name, verdict in record.items():
        if isinstance(verdict, dict) and "accepted" in verdict:
            losses = ", ".join(f"{k} {v:+.4f}" for k, v in verdict["loss_vs_fp32"].items())
            changed = ", ".join(f"{k} {v}" for k, v in verdict["changed"].items())
            lines.append(f"* {name.upper()}: loss against FP32 {losses}; changed: {changed}; "
                         f"{verdict['speed_vs_fp32']:.2f}x FP32's speed; "
                         + ("accepted" if verdict["accepted"] else "not accepted: " + "; ".join(verdict["reasons"])))
    if record.get("note"):
        lines.append(f"* {record['note']}")
    lines.append(f"\nAccepted: {', '.join(record.get('accepted', ['fp32']))} (the server picks INT8 where accepted and "
                 "the CPU has VNNI, else BF16 where accepted and the CPU has the units; `COLLAT_CPU_PRECISION` "
                 "overrides).")
    return "\n".join(lines) + "\n"


def _int8_section(record: dict) -> str:
    """How the INT8 IR beside the weights was made (``collat-train quantize``); whether it serves is the precision
    section's business."""
    return ("\n## INT8 IR\n\n"
            f"`{'`, `'.join(record.get('files', []))}`: {record.get('method')}, {record.get('tool')}; calibrated on "
            f"{record.get('calibration_samples')} network inputs from seeds {record.get('calibration_seeds')}, "
            f"validated on {record.get('validation_series')} series from seeds {record.get('validation_seeds')} "
            f"({record.get('validation_metric')}: FP32 {record.get('validation_fp32')}, INT8 "
            f"{record.get('validation_int8')}, allowed drop {record.get('max_drop')}). Made from the checkpoint with "
            f"SHA-256 `{record.get('checkpoint_sha256')}`; the export ships it only beside those weights.\n")


def _dataset_section(record: dict, figures: dict) -> str:
    """The labelled dataset the weights were fine-tuned on, its subject split, who was left out, and the test
    subjects' figures."""
    split = record.get("split", {})
    left_out = record.get("left_out", [])
    lines = [f"\n## Fine-tuning dataset: {record.get('name')} ({record.get('version')})\n",
             f"* Layout {record.get('layout')}, {record.get('subjects')} subjects, file list sha256 "
             f"`{record.get('file_digest')}`",
             f"* Split by subject (seed {record.get('split_seed')}): {len(split.get('train', []))} train, "
             f"{len(split.get('validation', []))} validation, {len(split.get('test', []))} test (ids in "
             "model_card.json)",
             f"* Mixed with {record.get('phantom_cases', 0)} phantom cases (fraction "
             f"{record.get('phantom_fraction', 0):g})",
             f"* Left out: {len(left_out)}" + "".join(f"\n  * {x['subject']}: {x['reason']}" for x in left_out)]
    if figures.get("subjects"):
        shown = {k: v for k, v in figures.items() if isinstance(v, float)}
        lines += ["", f"Test subjects ({figures['subjects']}), PyTorch on the served preparation:", "",
                  "| metric | value |", "| --- | ---: |"] + [f"| {k} | {v:.4f} |" for k, v in shown.items()]
    else:
        lines.append("* No test subject had what the figures need.")
    return "\n".join(lines) + "\n"


def write_model_card(out_dir: Path, *, model: str, preset: str, command: str, training: dict,
                     evaluation: dict, evaluation_native: dict | None = None,
                     extra: dict | None = None) -> tuple[Path, Path]:
    """``evaluation``: phantoms in MNI space (mrod: DCE); ``evaluation_native``: DWI/ADC in a native pose,
    registered as served (hypo only); ``extra``: further evaluations kept in the card (mrod: ``evaluation_dsc``,
    ``evaluation_cps``)."""
    dataset = training.get("dataset")
    disclaimer = DISCLAIMER if not dataset else (
        f"Fine-tuned on the research dataset {dataset.get('name')} (and phantom cases) by collat-train. NOT for "
        "clinical use: research weights, not validated as a medical device.")
    card = {"model": model, "preset": preset, "intended_use": "pipeline validation and demos" if not dataset else
            "research", "not_for_clinical_use": True, "disclaimer": disclaimer, "command": command,
            "training": training, "evaluation": evaluation}
    if evaluation_native is not None:
        card["evaluation_native"] = evaluation_native
    card.update(extra or {})
    json_path = out_dir / "model_card.json"
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    summary = _table(evaluation)
    passed = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in evaluation.get("passed", {}).items())
    network = ("3D-MROD-Net (five-phase collateral maps)" if model == "mrod"
               else "attention-gated 3D U-Net (hypoperfusion lesion)")
    cfg = training.get("config", {})
    first, last = evaluation.get("seeds", [0, 0])[0], evaluation.get("seeds", [0, 0])[-1]
    if "interpolated_from" in training:  # an average of checkpoints (collat-export interpolate)
        parts = "\n".join(f"  * weight {s['weight']:g}: `{s['checkpoint']}`, trained by `{s.get('command')}`"
                           for s in training["interpolated_from"])
        provenance = f"""* Weights: a parameter average of checkpoints of this network (WiSE-FT):
{parts}
* Chosen: {training.get('selection') or 'not recorded'}
* Reproduce: `{command}`"""
    else:
        version = f", phantom version {training['phantom_version']}" if "phantom_version" in training else ""
        start = f"* Fine-tuned from `{training['initialized_from']}` (its training: `initialized_from_training` in " \
                f"model_card.json where recorded)\n" if training.get("initialized_from") else ""
        seeds = training.get("seeds")
        provenance = f"""{start}* Training data: {training.get('cases')} phantom cases{version}, seeds {seeds}
  (evaluation seeds lie below 1,000,000)
* Best validation epoch: {training.get('best_epoch')} of {cfg.get('epochs')};
  training time {training.get('seconds', 0):.0f} s on CPU
* Git commit: {training.get('git_commit')}
* Reproduce: `{command}`"""
    kind = "phantom-trained demo weights" if not dataset else f"fine-tuned on {dataset.get('name')}"
    md = f"""# Model card: {model} ({preset} preset), {kind}

**{disclaimer}**

* Network: {network}
{"* Trained on: " + _modalities(training) + chr(10) if model == "mrod" else ""}{provenance}

"""
    if evaluation.get("summary"):  # an average's card may hold only the served (native-space) figures
        md += f"""
## Held-out evaluation ({evaluation.get('cases')} phantom cases, seeds {evaluation.get('seeds')}{_version(evaluation)})

| metric | value |
| --- | ---: |
{summary}

Targets met: {passed}

Reproduce: `collat-train evaluate --model {model} --checkpoint checkpoint.pt --seeds {first}-{last}`
"""
    if evaluation_native is not None:
        md += f"""
## Held-out evaluation, native-space DWI/ADC ({evaluation_native.get('cases')} phantom cases, seeds \
{evaluation_native.get('seeds')})

The served path: each case in a random head pose (0.9 x 0.9 x 5 mm), registered to MNI, scored on its own grid.

| metric | value |
| --- | ---: |
{_table(evaluation_native)}

{_size_bands(evaluation_native)}
Reproduce: `collat-train evaluate --model {model} --checkpoint checkpoint.pt --space native --seeds \
{evaluation_native.get('seeds', [0, 0])[0]}-{evaluation_native.get('seeds', [0, 0])[-1]}`
"""
    dsc = card.get("evaluation_dsc")
    if dsc:
        md += f"""
## Held-out evaluation, DSC series ({dsc.get('cases')} phantom cases, seeds {dsc.get('seeds')}{_version(dsc)})

| metric | value |
| --- | ---: |
{_table(dsc)}

Reproduce: `collat-train evaluate --model mrod --checkpoint checkpoint.pt --modality dsc --seeds \
{dsc.get('seeds', [0, 0])[0]}-{dsc.get('seeds', [0, 0])[-1]}`
"""
    if card.get("evaluation_kinds"):
        md += _kinds_section(card["evaluation_kinds"])
    if card.get("evaluation_cps"):
        md += _cps_section(card["evaluation_cps"])
    if card.get("lesion_calibration"):
        md += _calibration_section(card["lesion_calibration"])
    if card.get("training_domain"):
        md += _domain_section(card["training_domain"])
    if training.get("dataset"):
        md += _dataset_section(training["dataset"], card.get("evaluation_dataset") or {})
    if card.get("int8"):
        md += _int8_section(card["int8"])
    if card.get("precision"):
        md += _precision_section(card["precision"])
    md_path = out_dir / "model_card.md"
    md_path.write_text(md)
    return md_path, json_path

"""Model cards (Markdown + JSON) that travel with every trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

DISCLAIMER = ("Trained on synthetic digital-phantom cases for pipeline validation. "
              "NOT for clinical use: it has never seen a patient scan.")


def _table(evaluation: dict) -> str:
    return "\n".join(f"| {k} | {v:.4f} |" for k, v in evaluation.get("summary", {}).items())


def write_model_card(out_dir: Path, *, model: str, preset: str, command: str, training: dict,
                     evaluation: dict, evaluation_native: dict | None = None) -> tuple[Path, Path]:
    """``evaluation``: phantoms in MNI space; ``evaluation_native``: DWI/ADC in a native pose, registered as
    served (hypo only)."""
    card = {"model": model, "preset": preset, "intended_use": "pipeline validation and demos",
            "not_for_clinical_use": True, "disclaimer": DISCLAIMER, "command": command,
            "training": training, "evaluation": evaluation}
    if evaluation_native is not None:
        card["evaluation_native"] = evaluation_native
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
        provenance = f"""* Training data: {training.get('cases')} phantom cases, seeds {training.get('seeds')}
  (evaluation seeds lie below 1,000,000)
* Best validation epoch: {training.get('best_epoch')} of {cfg.get('epochs')};
  training time {training.get('seconds', 0):.0f} s on CPU
* Git commit: {training.get('git_commit')}
* Reproduce: `{command}`"""
    md = f"""# Model card: {model} ({preset} preset), phantom-trained demo weights

**{DISCLAIMER}**

* Network: {network}
{provenance}

## Held-out evaluation ({evaluation.get('cases')} phantom cases, seeds {evaluation.get('seeds')})

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

Reproduce: `collat-train evaluate --model {model} --checkpoint checkpoint.pt --space native --seeds \
{evaluation_native.get('seeds', [0, 0])[0]}-{evaluation_native.get('seeds', [0, 0])[-1]}`
"""
    md_path = out_dir / "model_card.md"
    md_path.write_text(md)
    return md_path, json_path

"""A network card for weights trained here (on a dataset), so that they import, version and serve like any other
network: ``collat-export repository --hypo-card`` / ``--mrod-card`` or ``add-version``.

The network is exported to ONNX beside the card with the built-in tensors (already in the served layout and
scaling), so the card states the identity adaptation; the U-Net's training domain and lesion calibration ride in
the card, where the import reads them for the server's plausibility gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from collat_contract.names import PHASE_NAMES

from ..checkpoint import load_checkpoint
from ..onnx_export import export_onnx

CARD_FILE = "network_card.yaml"
NETWORK_FOLDER = "network"


def write_network_card(checkpoint: Path, out_dir: Path, *, name: str, card_extra: dict[str, Any] | None = None,
                       ) -> Path:
    """Export ``checkpoint`` to ``out_dir/network/model.onnx`` (parity-checked) and write the card beside it."""
    loaded = load_checkpoint(checkpoint)
    preset = loaded.preset
    export_onnx(loaded.network, preset, out_dir / NETWORK_FOLDER, checkpoint=str(checkpoint))
    network = f"{NETWORK_FOLDER}/model.onnx"
    g = preset.geometry
    if preset.model == "hypo":
        card: dict[str, Any] = {
            "card_version": 1, "role": "hypoperfusion", "name": name, "network": network,
            "intended_use": "research",
            "inputs": {"image": {"name": "IMAGE", "layout": "NCDHW", "channels": ["dwi", "adc", "core", "side"]},
                       "nihss": {"name": "NIHSS", "scale": 21}},
            "outputs": {"lesion": {"name": "LESION_PROB", "layout": "NCDHW", "activation": "sigmoid"}},
        }
    else:
        training = loaded.training or {}
        card = {
            "card_version": 1, "role": "collateral", "name": name, "network": network, "intended_use": "research",
            "inputs": {"series": {"name": "MROD_INPUT", "layout": "NCDHW", "range": [-0.9, 0.9]}},
            "outputs": {"phases": {"name": "PHASES", "layout": "NCDHW", "activation": "none", "range": [-1, 1],
                                   "order": list(PHASE_NAMES)}},
            "modalities": list(training.get("modalities", ["dce"])), "frames": g.channels,
            "frame_seconds": g.frame_seconds, "slices": g.slices, "inplane": [g.height, g.width],
        }
        if "dsc" in card["modalities"] and training.get("dsc_conversion"):
            card["dsc_conversion"] = int(training["dsc_conversion"])
    card.update(card_extra or {})
    path = out_dir / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.partial")
    tmp.write_text("# Written by collat-train for weights it trained; see model_card.md beside it.\n"
                   + yaml.safe_dump(card, sort_keys=False))
    tmp.replace(path)
    return path

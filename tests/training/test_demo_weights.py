"""The shipped phantom-trained demo weights load and reach the promised quality on held-out seeds.

Three held-out cases here (the full 20 via ``collat-train evaluate``; figures in the model cards).
"""

import pytest

from collat_export.checkpoint import load_checkpoint
from collat_export.training.evaluate import TARGETS, evaluate_hypo, evaluate_mrod
from collat_export.weights import demo_checkpoint

HELD_OUT = [0, 1, 2]


# Measured on seeds 0-19 with the shipped weights, maps as served (network grid): DCE mean R^2 0.882 / SSIM 0.947,
# DSC 0.846 / 0.937 (targets 0.85 / 0.90 for DCE, 0.80 / 0.90 for DSC).
@pytest.mark.slow
@pytest.mark.parametrize("modality", ["dce", "dsc"])
def test_mrod_demo_weights_reach_the_map_targets(modality):
    loaded = load_checkpoint(demo_checkpoint("mrod"), model="mrod")
    assert loaded.preset.name == "tiny"
    report = evaluate_mrod(loaded.network, loaded.preset, HELD_OUT, modality=modality)
    targets = TARGETS["mrod_dsc" if modality == "dsc" else "mrod"]
    assert report.summary["mean_r2"] >= targets["mean_r2"]
    assert report.summary["mean_ssim"] >= targets["mean_ssim"]
    # The raw output differs from the served maps only outside the brain, where SSIM's windows at the edge look.
    assert report.summary["mean_ssim_raw"] < report.summary["mean_ssim"]
    assert abs(report.summary["mean_r2_raw"] - report.summary["mean_r2"]) < 0.01


# Measured on seeds 0-19 with the shipped weights: median Dice 0.75, DEFUSE 3 accuracy 1.00 (both targets met);
# ten of them here (median Dice 0.80: small lesions of 1-4 mL are overestimated, Dice ~0.35).
@pytest.mark.slow
def test_hypo_demo_weights_reach_the_lesion_targets():
    loaded = load_checkpoint(demo_checkpoint("hypo"), model="hypo")
    report = evaluate_hypo(loaded.network, list(range(10)))
    assert report.summary["median_dice"] >= TARGETS["hypo"]["median_dice"]
    assert report.summary["defuse3_accuracy"] >= TARGETS["hypo"]["defuse3_accuracy"]


@pytest.mark.slow
def test_demo_weights_load_and_map_a_held_out_case():
    """One case through the shipped weights: the maps correlate with the reference."""
    loaded = load_checkpoint(demo_checkpoint("mrod"), model="mrod")
    training = load_checkpoint(demo_checkpoint("hypo"), model="hypo").training  # a weight average, recorded
    assert [s["weight"] for s in training["interpolated_from"]] == [0.5, 0.5]
    assert training["interpolated_from"][1]["training"]["cases"] == 160
    assert evaluate_mrod(loaded.network, loaded.preset, [3]).summary["mean_r2"] > 0.8


def test_demo_cards_say_not_for_clinical_use():
    for model in ("mrod", "hypo"):
        card = demo_checkpoint(model).with_name("model_card.md").read_text()
        assert "NOT for clinical use" in card and "phantom" in card


def test_the_fine_demo_weights_load_as_the_fine_preset_on_the_dce_mra_grid():
    """Shipped beside the tiny ones (selectable with MROD_CHECKPOINT); their card records the input-grid scores."""
    import json

    folder = demo_checkpoint("mrod").parent.with_name("mrod_fine")
    loaded = load_checkpoint(folder / "checkpoint.pt", model="mrod")
    assert loaded.preset.name == "fine" and (loaded.preset.geometry.slices, loaded.preset.geometry.height) == (20, 128)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["not_for_clinical_use"] and "NOT for clinical use" in (folder / "model_card.md").read_text()
    assert card["evaluation"]["summary"]["mean_r2_input_grid"] > 0.7  # tiny: 0.57 (seeds 0-19)
    assert card["evaluation_dsc"]["summary"]["mean_r2_input_grid"] > 0.6  # tiny: 0.55

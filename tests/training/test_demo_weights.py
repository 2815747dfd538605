"""The shipped phantom-trained demo weights load and reach the promised quality on held-out seeds.

Three held-out cases here (the full 20 via ``collat-train evaluate``; figures in the model cards).
"""

import pytest

from collat_export.checkpoint import load_checkpoint
from collat_export.training.evaluate import TARGETS, evaluate_hypo, evaluate_mrod
from collat_export.weights import demo_checkpoint

HELD_OUT = [0, 1, 2]


@pytest.mark.slow
def test_mrod_demo_weights_reach_the_map_targets():
    loaded = load_checkpoint(demo_checkpoint("mrod"), model="mrod")
    assert loaded.preset.name == "tiny"
    report = evaluate_mrod(loaded.network, loaded.preset, HELD_OUT)
    assert report.summary["mean_r2"] >= TARGETS["mrod"]["mean_r2"]
    assert report.summary["mean_ssim"] >= TARGETS["mrod"]["mean_ssim"]


@pytest.mark.slow
def test_hypo_demo_weights_reach_the_lesion_targets():
    loaded = load_checkpoint(demo_checkpoint("hypo"), model="hypo")
    report = evaluate_hypo(loaded.network, HELD_OUT)
    assert report.summary["median_dice"] >= TARGETS["hypo"]["median_dice"]
    assert report.summary["defuse3_accuracy"] >= TARGETS["hypo"]["defuse3_accuracy"]


def test_demo_cards_say_not_for_clinical_use():
    for model in ("mrod", "hypo"):
        card = demo_checkpoint(model).with_name("model_card.md").read_text()
        assert "NOT for clinical use" in card and "phantom" in card

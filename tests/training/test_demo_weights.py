"""The shipped phantom-trained demo weights load and reach the promised quality on held-out seeds.

Three held-out cases here (the full 20 via ``collat-train evaluate``; figures in the model cards).
"""

import json

import pytest

from collat_export.checkpoint import load_checkpoint
from collat_export.training.evaluate import TARGETS, evaluate_hypo, evaluate_mrod
from collat_export.weights import demo_checkpoint

HELD_OUT = [0, 1, 2]


# The served fine weights on the input grid inside the brain. The 0.92 asked for is a mean over the 200 held-out
# seeds (the card's figure, checked below); three seeds vary more, so DSC's R^2 floor here is lower, set under what
# the shipped weights score on them and above what earlier weights did.
SERVED_MAP_FLOORS = {"dce": (0.92, 0.92), "dsc": (0.90, 0.92)}


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["dce", "dsc"])
def test_the_fine_mrod_weights_map_on_the_input_grid(modality):
    loaded = load_checkpoint(demo_checkpoint("mrod", "fine"), model="mrod")
    assert loaded.preset.name == "fine"
    report = evaluate_mrod(loaded.network, loaded.preset, HELD_OUT, modality=modality)  # phantom v5, as trained
    assert report.as_dict()["phantom_version"] == "5"
    r2, ssim = SERVED_MAP_FLOORS[modality]
    assert report.summary["mean_r2_input_grid"] >= r2 and report.summary["mean_ssim_input_grid"] >= ssim
    assert report.summary["mean_r2"] == pytest.approx(report.summary["mean_r2_input_grid"], abs=1e-4)  # one grid
    # The raw output differs from the served maps only outside the brain, where SSIM's windows at the edge look.
    assert report.summary["mean_ssim_raw"] < report.summary["mean_ssim"]
    assert abs(report.summary["mean_r2_raw"] - report.summary["mean_r2"]) < 0.01


# The tiny weights (DSC conversion 1), scored on their own coarser grid against the targets of evaluate.TARGETS;
# their figures are in their model card.
@pytest.mark.slow
def test_the_tiny_mrod_weights_reach_the_network_grid_targets():
    loaded = load_checkpoint(demo_checkpoint("mrod", "tiny"), model="mrod")
    assert loaded.preset.name == "tiny"
    report = evaluate_mrod(loaded.network, loaded.preset, HELD_OUT, modality="dce", phantom_version_4=True)
    assert report.as_dict()["phantom_version"] == "4"
    assert report.summary["mean_r2"] >= TARGETS["mrod"]["mean_r2"]
    assert report.summary["mean_ssim"] >= TARGETS["mrod"]["mean_ssim"]
    assert report.summary["mean_r2_input_grid"] < 0.7  # its grid is coarser than the input's


# Six held-out seeds (the card has 20 in MNI space and 200 native), two worker processes.
@pytest.mark.slow
def test_hypo_demo_weights_reach_the_lesion_targets():
    loaded = load_checkpoint(demo_checkpoint("hypo"), model="hypo")
    # Phantom version 4's MCA strokes, where the card measured these weights; version 5's (every collateral grade)
    # are not yet in their training (docs/training.md)
    report = evaluate_hypo(loaded.network, list(range(6)), workers=2, phantom_version_4=True)
    assert [r["seed"] for r in report.rows] == list(range(6))  # in seed order from the worker processes
    assert report.summary["median_dice"] >= TARGETS["hypo"]["median_dice"]
    assert report.summary["defuse3_accuracy"] >= TARGETS["hypo"]["defuse3_accuracy"]


def test_the_shipped_weights_record_how_they_were_made():
    # The U-Net: the phantom-v3 weights averaged with their fine-tune on phantom version 4's mix of kinds.
    sources = load_checkpoint(demo_checkpoint("hypo"), model="hypo").training["interpolated_from"]
    assert [s["weight"] for s in sources] == [0.5, 0.5]
    fine_tune = sources[1]["training"]
    assert (fine_tune["phantom_version"], fine_tune["kinds"], fine_tune["cases"]) == ("4", "mixed", 400)
    assert sources[0]["training"]["phantom_version"] == "3" and sources[0]["training"]["cases"] == 320
    card = json.loads(demo_checkpoint("hypo").with_name("model_card.json").read_text())  # the v3 weights' chain back
    chain = [card["training"]["interpolated_from"][0]["training"]]  # to the phantom-v2 average, one record per run
    assert chain[0]["initialized_from"] == "build/train/hypo_v3d/checkpoint.pt"
    while "initialized_from_training" in chain[-1]:
        chain.append(chain[-1]["initialized_from_training"])
    assert [run.get("phantom_version") for run in chain[:6]] == ["3", "3", "3", "3", "3", "2"]
    assert [run["cases"] for run in chain[:5]] == [320, 320, 240, 240, 160]
    assert [s["weight"] for s in chain[5]["interpolated_from"]] == [0.5, 0.5]
    assert card["evaluation_native"]["cases"] == 200 and set(card["evaluation_native"]["by_size"]) == {
        "<10 mL", "10-50 mL", "50-100 mL", ">=100 mL"}
    kinds = card["evaluation_kinds"]  # issue 35's bars on 200 held-out cases of every kind
    assert kinds["cases"] == 200 and all(kinds["passed"].values()) and set(kinds["by_kind"]) >= {
        "mca", "lacune", "posterior", "mimic", "chronic", "emboli", "lacune+mimic+chronic"}
    fine = load_checkpoint(demo_checkpoint("mrod", "fine"), model="mrod").training
    assert fine["phantom_version"] == "5" and fine["modalities"] == ["dce", "dsc"] and fine["dsc_conversion"] == "2"
    card = json.loads(demo_checkpoint("mrod", "fine").with_name("model_card.json").read_text())  # the whole chain:
    chain = [card["training"]]  # phantom v5: three head runs each over its coarse path trained on, two head runs
    while "initialized_from_training" in chain[-1]:  # over the coarse path retrained, a stopped one before them;
        chain.append(chain[-1]["initialized_from_training"])  # then five on conversion 2, then the version-1 ones
    assert [run.get("phantom_version") for run in chain[:7]] == ["5"] * 6 + ["3"]
    assert [run.get("dsc_conversion", "1") for run in chain] == ["2"] * 11 + ["1"] * 3
    rounds = [chain[i]["combined"]["coarse_path"] for i in range(3)]  # the last three rounds: each trained the
    assert rounds[0]["initialized_from"] == "build/train/mrod_tiny_v5d/checkpoint.pt"  # coarse path on from the one
    assert rounds[0]["initialized_from_training"]["command"] == rounds[1]["command"]  # before it
    assert rounds[1]["initialized_from_training"]["command"] == rounds[2]["command"]
    assert rounds[2]["initialized_from"].startswith("build/train/mrod_coarse_of_v5c/checkpoint.pt")
    assert [len(r["history"]) for r in rounds] == [40, 40, 30]
    v5_coarse = chain[4]["combined"]["coarse_path"]  # phantom v5: the coarse path went on from the shipped one's
    assert v5_coarse["initialized_from_training"]["initialized_from"].startswith(
        "build/train/mrod_coarse_of_fine/checkpoint.pt")
    assert [len(c["history"]) for c in (v5_coarse, v5_coarse["initialized_from_training"])] == [20, 20]
    coarse = [chain[7]["combined"]["coarse_path"], chain[10]["combined"]["coarse_path"]]  # conversion 2's two
    assert coarse[0]["initialized_from_training"]["command"] == coarse[1]["command"]  # went on from the first one
    assert all(c["command"].startswith("collat-train mrod --preset tiny") for c in [*coarse, v5_coarse])
    assert [len(c["history"]) for c in coarse] == [45, 20]
    assert chain[-1]["initialized_from"].endswith("mrod_tiny/checkpoint.pt")


def test_demo_cards_say_not_for_clinical_use():
    for model in ("mrod", "hypo"):
        card = demo_checkpoint(model).with_name("model_card.md").read_text()
        assert "NOT for clinical use" in card and "phantom" in card


def test_the_fine_demo_weights_load_as_the_fine_preset_on_the_dce_mra_grid():
    """The served 3D-MROD-Net; the card records both modalities' input-grid scores and the CPS agreement."""
    folder = demo_checkpoint("mrod", "fine").parent
    loaded = load_checkpoint(folder / "checkpoint.pt", model="mrod")
    assert folder.name == "mrod_fine" and loaded.preset.name == "fine"
    assert (loaded.preset.geometry.slices, loaded.preset.geometry.height) == (20, 128)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["not_for_clinical_use"] and "NOT for clinical use" in (folder / "model_card.md").read_text()
    assert card["evaluation"]["summary"]["mean_r2_input_grid"] >= 0.92
    assert card["evaluation"]["summary"]["mean_ssim_input_grid"] >= 0.92
    assert card["evaluation_dsc"]["summary"]["mean_r2_input_grid"] >= 0.92
    assert card["evaluation_dsc"]["summary"]["mean_ssim_input_grid"] >= 0.92
    assert card["evaluation"]["cases"] == card["evaluation_dsc"]["cases"] == 200
    cps = card["evaluation_cps"]  # phantom version 5: every grade, with the study's frequencies (issue 39's bars)
    grades = cps["network"]["all"]
    assert cps["phantom_version"] == "5" and grades["cases"] == 300 and cps["truth_grades"][0] >= 40
    assert grades["weighted_kappa"] >= 0.90 and grades["exact"] >= 0.80
    assert all(a["exact"] >= 0.70 for a in grades["per_grade"].values()) and len(grades["per_grade"]) == 6
    assert sum(grades["confusion"][0][3:]) == 0 and sum(grades["confusion"][5][:3]) == 0
    rule = card["cps_rule"]  # fitted on these weights' maps, on training seeds; the evaluation graded with it
    assert "seeds 1100000-1100099" in rule["fitted_on"] and "mrod_fine" in rule["fitted_on"]
    assert cps["rule"]["ratios"] == rule["ratios"]

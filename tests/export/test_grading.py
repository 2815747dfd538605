"""The CPS rule's fit and its agreement figures."""

import subprocess
import sys

import numpy as np
import pytest

from collat_ensemble.territory import CPS_PHASES
from collat_export.statistics import confusion, weighted_kappa
from collat_export.training.grading import (
    GradingCase,
    agreement,
    fit_ratios,
    scores,
)


def test_weighted_kappa_and_confusion():
    truth = np.array([0, 1, 2, 3, 4, 5])
    assert weighted_kappa(truth, truth) == pytest.approx(1.0)
    assert weighted_kappa(truth, truth[::-1]) == pytest.approx(-1.0)
    # one grade off everywhere hurts little with quadratic weights; three off hurts a lot
    near = weighted_kappa(truth, np.clip(truth + 1, 0, 5))
    far = weighted_kappa(truth, np.clip(truth + 3, 0, 5))
    assert 0.8 < near < 1.0 and far < 0.5
    matrix = confusion(truth, np.clip(truth + 1, 0, 5))
    assert matrix.shape == (6, 6) and matrix.sum() == 6 and matrix[5, 5] == 1 and matrix[0, 1] == 1
    a = agreement(truth, np.clip(truth + 1, 0, 5))
    assert a["exact"] == pytest.approx(1 / 6) and a["within_one"] == 1.0 and a["cases"] == 6


def _planted(truth_ratio: float, rng: np.random.Generator, seed: int) -> GradingCase:
    """A territory whose voxels are darker than their mirror by known amounts; the grade is the rule at the planted
    ratio, so a fit must find a ratio that gives the same grades."""
    n = 400
    mirrored = np.full((n, 3), 0.8, np.float32)
    drops = rng.uniform(0.0, 0.6, size=(n, 3)).astype(np.float32) * rng.uniform(0.2, 1.6, size=3)
    values = mirrored * (1.0 - np.clip(drops, 0.0, 0.95))
    truth = scores(values, mirrored, dict.fromkeys(CPS_PHASES, truth_ratio), 0.1)
    return GradingCase(seed, "dce", False, truth, {"network": values}, {"network": mirrored}, {"network": "left"},
                       "left")


def test_the_fit_recovers_a_planted_rule():
    rng = np.random.default_rng(0)
    cases = [_planted(0.35, rng, s) for s in range(40)]
    ratios = fit_ratios(cases, "network", 0.1)
    estimate = [scores(c.values["network"], c.mirrored["network"], ratios, 0.1) for c in cases]
    assert np.mean(np.array(estimate) == [c.truth for c in cases]) >= 0.95
    assert all(abs(r - 0.35) <= 0.1 for r in ratios.values())


@pytest.mark.slow
def test_fitting_refuses_held_out_seeds_and_evaluating_refuses_training_seeds(tmp_path):
    cli = [sys.executable, "-m", "collat_export.training.cli"]
    fit = subprocess.run([*cli, "fit-cps", "--checkpoint", "x.pt", "--seeds", "0-9"], capture_output=True, text=True,
                         timeout=120)
    assert fit.returncode == 2 and "fitted on training seeds (>= 1,000,000)" in fit.stderr
    assert "Traceback" not in fit.stderr
    ev = subprocess.run([*cli, "evaluate", "--model", "cps", "--checkpoint", "x.pt", "--seeds", "1000000-1000001"],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 2 and "evaluation seeds must be below 1,000,000" in ev.stderr


def test_model_json_says_which_modalities_the_weights_saw(tmp_path):
    import json

    from collat_export.onnx_export import trained_modalities
    from collat_export.weights import demo_checkpoint

    assert trained_modalities(str(demo_checkpoint("mrod")), "mrod") == ["dce", "dsc"]  # the shipped card
    assert trained_modalities(None, "mrod") == []  # random weights saw nothing: the server withholds the grade
    assert trained_modalities(str(demo_checkpoint("hypo")), "hypo") is None
    (tmp_path / "model_card.json").write_text(json.dumps({"training": {"cases": 3}}))
    assert trained_modalities(str(tmp_path / "checkpoint.pt"), "mrod") == ["dce"]  # cards before the field: DCE only


def test_model_json_says_how_the_weights_dsc_was_converted(tmp_path):
    import json

    from collat_ensemble.contrast import DSC_CONVERSION
    from collat_export.onnx_export import dsc_conversion
    from collat_export.weights import demo_checkpoint

    assert dsc_conversion(str(demo_checkpoint("mrod")), "mrod") == DSC_CONVERSION  # the served weights: this one
    assert dsc_conversion(str(demo_checkpoint("mrod", "tiny")), "mrod") == "1"  # trained before version 2
    assert dsc_conversion(str(demo_checkpoint("hypo")), "hypo") is None and dsc_conversion(None, "mrod") is None
    (tmp_path / "model_card.json").write_text(json.dumps({"training": {"modalities": ["dce"]}}))
    assert dsc_conversion(str(tmp_path / "checkpoint.pt"), "mrod") is None  # no DSC seen, nothing to match


def test_weights_are_graded_by_the_cps_rule_in_their_own_card(tmp_path):
    """The card's ``cps_rule`` (fitted on the weights' maps) goes into model.json and grades their evaluation; a card
    without one gets the default rule; a broken one is refused by name before anything is built on it."""
    import json

    from collat_ensemble.errors import InputValidationError
    from collat_ensemble.territory import default_rule
    from collat_export.onnx_export import cps_rule, served_cps_rule

    checkpoint = tmp_path / "checkpoint.pt"
    (tmp_path / "model_card.json").write_text(json.dumps({"training": {}}))
    assert cps_rule(str(checkpoint), "mrod") is None and served_cps_rule(checkpoint) == default_rule()
    own = {"ratios": {"capillary": 0.45, "early_venous": 0.35, "late_venous": 0.3}, "floor": 0.1, "fitted_on": "x"}
    (tmp_path / "model_card.json").write_text(json.dumps({"cps_rule": own}))
    assert cps_rule(str(checkpoint), "mrod") == own and cps_rule(str(checkpoint), "hypo") is None
    assert served_cps_rule(checkpoint).ratios == own["ratios"]
    (tmp_path / "model_card.json").write_text(json.dumps({"cps_rule": {**own, "floor": 2.0}}))
    with pytest.raises(InputValidationError, match=r"model_card.json: cps_rule: not a CPS rule .*floor 2.0"):
        cps_rule(str(checkpoint), "mrod")


@pytest.mark.slow
def test_the_fitted_rule_is_written_into_the_weights_card(tmp_path):
    """fit-cps --update-card: the rule goes into the card (both files), which keeps what it said before."""
    import json
    import shutil

    from collat_export.weights import demo_checkpoint

    source = demo_checkpoint("mrod", "tiny")
    for name in ("checkpoint.pt", "model_card.json", "model_card.md"):
        shutil.copy(source.with_name(name), tmp_path / name)
    before = json.loads((tmp_path / "model_card.json").read_text())
    fit = subprocess.run([sys.executable, "-m", "collat_export.training.cli", "fit-cps", "--checkpoint",
                          str(tmp_path / "checkpoint.pt"), "--seeds", "1100000-1100000", "--update-card"],
                         capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    card = json.loads((tmp_path / "model_card.json").read_text())
    rule = card["cps_rule"]
    assert set(rule["ratios"]) == set(CPS_PHASES) and rule["floor"] == 0.1
    assert "2 phantom series (seeds 1100000-1100000" in rule["fitted_on"] and "--update-card" in rule["fitted_on"]
    assert card["evaluation_cps"] == before["evaluation_cps"] and card["training"] == before["training"]
    assert "NOT for clinical use" in (tmp_path / "model_card.md").read_text()


@pytest.mark.slow
def test_weights_are_evaluated_on_the_dsc_conversion_they_were_trained_on():
    """collat-train evaluate and fit-cps convert DSC by the weights' own version (as the server does for them):
    the tiny weights read version 1, and version 2 would score them on an input they never saw."""
    from collat_ensemble.contrast import DSC_CONVERSION, trained_dsc_conversion
    from collat_export.checkpoint import load_checkpoint
    from collat_export.training.evaluate import evaluate_mrod
    from collat_export.weights import demo_checkpoint

    tiny = load_checkpoint(demo_checkpoint("mrod", "tiny"), model="mrod")
    fine = load_checkpoint(demo_checkpoint("mrod", "fine"), model="mrod")
    assert trained_dsc_conversion(tiny.training) == "1" and trained_dsc_conversion(fine.training) == DSC_CONVERSION
    own, other = (evaluate_mrod(tiny.network, tiny.preset, [1], modality="dsc", dsc_conversion=v).summary["mean_r2"]
                  for v in ("1", "2"))
    assert own > 0.8 and other < own - 0.05

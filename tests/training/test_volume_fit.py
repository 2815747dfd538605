import math

import numpy as np
import pytest

from collat_export.training.evaluate import LESIONLESS, EvaluationReport, by_kind, by_size, fit_volume_calibration


def _rows(rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        network, core, nihss = rng.uniform(2, 200), rng.uniform(0, 60), int(rng.integers(0, 30))
        truth = math.expm1(0.3 + 1.2 * math.log1p(network) - 0.4 * math.log1p(core) + 0.02 * nihss)
        rows.append({"network_ml": network, "core_ml": core, "nihss": nihss, "truth_ml": truth})
    return rows


def test_the_fit_recovers_a_known_calibration_and_needs_enough_cases():
    fitted = fit_volume_calibration(_rows(np.random.default_rng(0), 40), "synthetic")
    assert (fitted.intercept, fitted.network, fitted.core, fitted.nihss) == pytest.approx((0.3, 1.2, -0.4, 0.02),
                                                                                          abs=1e-6)
    assert fitted.fitted_on == "synthetic"
    with pytest.raises(ValueError, match="at least 8"):
        fit_volume_calibration(_rows(np.random.default_rng(0), 5), "too few")


def test_size_bands_score_the_served_and_the_network_decisions():
    rows = [{"truth_ml": 5.0, "pred_ml": 6.0, "network_ml": 15.0, "defuse3": False, "defuse3_network": True,
             "defuse3_truth": False},
            {"truth_ml": 60.0, "pred_ml": 50.0, "network_ml": 40.0, "defuse3": True, "defuse3_network": True,
             "defuse3_truth": True}]
    bands = by_size(rows)
    assert set(bands) == {"<10 mL", "50-100 mL"}
    assert bands["<10 mL"]["mean_volume_error_ml"] == 1.0 and bands["<10 mL"]["network_mean_volume_error_ml"] == 10.0
    assert bands["<10 mL"]["defuse3_accuracy"] == 1.0 and bands["<10 mL"]["network_defuse3_accuracy"] == 0.0
    assert bands["50-100 mL"]["mean_abs_volume_error_ml"] == 10.0


def _kind_row(kind: str, pred_ml: float, truth_ml: float, *, defuse3: bool = False, withheld: bool = False) -> dict:
    return {"kind": kind, "dice": 1.0 if pred_ml == truth_ml else 0.5, "pred_ml": pred_ml, "truth_ml": truth_ml,
            "defuse3": defuse3, "defuse3_truth": False, "defuse3_served": defuse3 and not withheld,
            "withheld": withheld}


def test_lesionless_kinds_are_held_to_their_own_bars():
    """Under 10 mL in 95 % of lacunes, mimics and chronic infarcts, and no DEFUSE 3 "yes": one 40 mL mimic in
    twenty misses neither; a DEFUSE 3 "yes" on one misses the second, even withheld by the server."""
    rows = [_kind_row("mimic", 0.0, 0.0) for _ in range(19)] + [_kind_row("lacune", 40.0, 0.5, withheld=True)]
    pooled = by_kind([{**r, "kind": LESIONLESS} for r in rows])[LESIONLESS]
    assert pooled["under_10ml_fraction"] == 0.95 and pooled["served_under_10ml_or_withheld_fraction"] == 1.0
    assert pooled["withheld_fraction"] == 0.05 and pooled["defuse3_false_yes"] == 0
    report = EvaluationReport("hypo", [0], summary={"median_dice": 0.9, "defuse3_accuracy": 0.95}, kinds="mixed",
                              by_kind={LESIONLESS: pooled})
    assert report.passed() == {"median_dice": True, "defuse3_accuracy": True,
                               "lesionless_under_10ml_fraction": True, "lesionless_defuse3_false_yes": True}
    rows[-1] = _kind_row("lacune", 40.0, 0.5, defuse3=True, withheld=True)
    report.by_kind = by_kind([{**r, "kind": LESIONLESS} for r in rows])
    assert report.passed()["lesionless_defuse3_false_yes"] is False
    assert report.by_kind[LESIONLESS]["served_defuse3_false_yes"] == 0
    assert "lesionless_under_10ml_fraction" not in EvaluationReport("hypo", [0], summary=report.summary).passed()

import numpy as np
import pytest

from collat_ensemble.clinical import (
    collateral_perfusion_score,
    dawn_eligibility,
    defuse3_target_mismatch,
    mismatch,
    near_threshold,
    volume_ml,
)
from collat_ensemble.errors import InputValidationError


def test_volume_uses_the_voxel_size_of_the_image():
    mask = np.zeros((10, 10, 10), bool)
    mask[:5, :4, :2] = True  # 40 voxels
    assert volume_ml(mask, np.diag([2.0, 2.0, 2.0, 1.0])) == pytest.approx(40 * 8 / 1000)
    assert volume_ml(mask, np.diag([-1.0, 1.0, 5.0, 1.0])) == pytest.approx(40 * 5 / 1000)
    with pytest.raises(InputValidationError, match="singular"):
        volume_ml(mask, np.diag([1.0, 0.0, 1.0, 1.0]))


def test_mismatch_ratio_is_capped_at_20():
    assert mismatch(90.0, 30.0).ratio == pytest.approx(3.0)
    assert mismatch(90.0, 30.0).volume_ml == pytest.approx(60.0)
    assert mismatch(50.0, 0.0).ratio == 20.0 and mismatch(50.0, 0.0).ratio_capped
    assert mismatch(100.0, 2.0).ratio == 20.0
    assert mismatch(0.0, 0.0).ratio == 0.0


@pytest.mark.parametrize("hypo, core, eligible", [
    (100.0, 20.0, True),      # ratio 5, mismatch 80
    (100.0, 71.0, False),     # core too large
    (130.0, 70.0, True),      # core exactly 70 is allowed (ratio 1.86, mismatch 60)
    (30.0, 20.0, False),      # ratio 1.5
    (36.0, 20.0, True),       # ratio exactly 1.8, mismatch 16
    (24.0, 10.0, False),      # ratio 2.4 but mismatch 14 mL
    (15.0, 0.0, True),        # no core: ratio capped at 20, mismatch exactly 15
])
def test_defuse3_hand_computed(hypo, core, eligible):
    assert defuse3_target_mismatch(core, mismatch(hypo, core)).eligible is eligible


def test_defuse3_flags_values_near_a_threshold():
    d = defuse3_target_mismatch(66.0, mismatch(200.0, 66.0))
    assert d.eligible and d.near_threshold == ["core_ml"]
    assert near_threshold(1.9, 1.8) and not near_threshold(2.1, 1.8)


@pytest.mark.parametrize("age, nihss, core, groups", [
    (85, 12, 20.9, {"A": True, "B": False, "C": False}),
    (85, 12, 21.0, {"A": False, "B": False, "C": False}),
    (70, 10, 30.0, {"A": False, "B": True, "C": False}),
    (70, 9, 10.0, {"A": False, "B": False, "C": False}),
    (70, 22, 45.0, {"A": False, "B": False, "C": True}),
    (70, 22, 51.0, {"A": False, "B": False, "C": False}),
    (80, 25, 35.0, {"A": False, "B": False, "C": False}),  # age 80 falls under A only
])
def test_dawn_groups(age, nihss, core, groups):
    result = dawn_eligibility(age, nihss, core)
    assert result.groups == groups
    assert result.eligible == any(groups.values())


@pytest.mark.parametrize("c, e, late, cps", [
    (0.0, 0.0, 0.0, 5),
    (0.1, 0.0, 0.0, 5),      # less than 1 of 8 regions is "small"
    (0.5, 0.1, 0.0, 4),
    (0.5, 0.5, 0.0, 3),
    (0.75, 0.1, 0.0, 3),     # > 1/2 capillary, small early venous
    (0.75, 0.5, 0.0, 2),
    (0.75, 0.75, 0.5, 1),
    (0.25, 0.75, 0.25, 1),
    (1.0, 1.0, 0.75, 0),
])
def test_collateral_perfusion_score_rules(c, e, late, cps):
    assert collateral_perfusion_score(c, e, late) == cps


def test_cps_rejects_fractions_outside_unit_interval():
    with pytest.raises(ValueError, match="capillary"):
        collateral_perfusion_score(1.5, 0.0, 0.0)


def test_the_cps_rule_grades_arrays_as_it_grades_each_case():
    """One rule for the server and for the training code's fit, which grades arrays of candidate fractions: an array
    call gives, element by element, what the scalar calls give, on a grid through every threshold."""
    import itertools

    levels = [0.0, 0.05, 0.124, 0.125, 0.126, 0.3, 0.499, 0.5, 0.501, 0.75, 0.9, 1.0]
    c, e, late = (np.array(v) for v in zip(*itertools.product(levels, repeat=3), strict=True))
    scalar = [collateral_perfusion_score(*map(float, t)) for t in zip(c, e, late, strict=True)]
    assert all(type(g) is int for g in scalar) and set(scalar) == {0, 1, 2, 3, 4, 5}
    graded = collateral_perfusion_score(c, e, late)
    assert graded.dtype.kind == "i" and graded.shape == c.shape
    np.testing.assert_array_equal(graded, scalar)
    np.testing.assert_array_equal(collateral_perfusion_score(c.reshape(-1, 12), 0.0, 0.0),  # broadcasting, 2D
                                  np.reshape([collateral_perfusion_score(float(x), 0.0, 0.0) for x in c], (-1, 12)))
    with pytest.raises(ValueError, match="early_venous fraction must lie in \\[0, 1\\], got 1.5"):
        collateral_perfusion_score(c[:2], np.array([0.2, 1.5]), 0.0)
    with pytest.raises(ValueError, match="late_venous"):
        collateral_perfusion_score(0.0, 0.0, np.array([np.nan]))


def test_the_dawn_rule_reads_its_named_thresholds(monkeypatch):
    """The groups and the near-threshold flag read the module's DAWN constants (one home), not literals of their own."""
    from collat_ensemble import clinical

    assert dawn_eligibility(70, 10, 30.0).groups["B"] and dawn_eligibility(70, 10, 30.0).near_threshold == ["core_ml"]
    monkeypatch.setattr(clinical, "DAWN_GROUP_B_MAX_CORE_ML", 25.0)
    result = dawn_eligibility(70, 22, 30.0)
    assert result.groups == {"A": False, "B": False, "C": True}  # group C now starts at 25 mL
    assert result.near_threshold == []  # 30 mL is no longer within 10 % of a threshold (21, 25, 51)
    monkeypatch.setattr(clinical, "DAWN_AGE_SPLIT", 65.0)
    assert dawn_eligibility(70, 12, 20.0).groups == {"A": True, "B": False, "C": False}

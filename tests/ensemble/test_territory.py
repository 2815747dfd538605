"""The CPS in template space: the phantom's grade by SPEC section 4, the territory, the mirror, the rule."""

import numpy as np
import pytest

from collat_ensemble.clinical import collateral_perfusion_score
from collat_ensemble.errors import InputValidationError
from collat_ensemble.phantom import generate_case, turn_in_plane
from collat_ensemble.phases import collateral_maps
from collat_ensemble.preprocess import prepare_perfusion
from collat_ensemble.registration import registration_error_mm
from collat_ensemble.territory import (
    ASSESSMENT_AFFINE,
    ASSESSMENT_SHAPE,
    CPS_PHASES,
    TRUTH_RATIO,
    CPSRule,
    assess_collaterals,
    default_rule,
    mca_territory,
    mirror,
)

TRUTH_RULE = CPSRule(dict.fromkeys(CPS_PHASES, TRUTH_RATIO), 0.1, "the phantom's own definition")


def test_the_territories_are_mirror_images_in_one_hemisphere_each():
    left, right = mca_territory("left"), mca_territory("right")
    assert left.shape == ASSESSMENT_SHAPE and not (left & right).any()
    np.testing.assert_array_equal(mirror(left), right)
    x = ASSESSMENT_AFFINE[0, 0] * np.arange(ASSESSMENT_SHAPE[0]) + ASSESSMENT_AFFINE[0, 3]
    assert x[left.any(axis=(1, 2))].max() < 0 < x[right.any(axis=(1, 2))].min()
    assert x[0] == -x[-1]  # the grid is symmetric about the midline plane: reversing axis 0 mirrors
    # 4 mm voxels: each territory is the 276 mL ellipsoid (30 x 55 x 40 mm semi-axes)
    assert left.sum() * 64 / 1000 == pytest.approx(4 / 3 * np.pi * 30 * 55 * 40 / 1000, rel=0.02)
    with pytest.raises(InputValidationError, match="left or right"):
        mca_territory("bilateral")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11, 14])
def test_the_phantoms_grade_is_spec_section_4_on_its_own_fractions(seed):
    truth = generate_case(seed).truth
    fractions = truth["hypoperfused_fraction"]
    assert truth["collateral_grade"] == collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES))
    assert 0 <= truth["collateral_strength"] <= 5


@pytest.mark.slow
def test_weaker_collaterals_give_a_lower_grade_on_the_same_anatomy():
    grades = [generate_case(9, strength=s, side="left").truth["collateral_grade"] for s in (0, 5)]
    assert grades[0] < grades[1]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2, 4, 11])
def test_the_reference_maps_give_the_phantoms_grade(seed):
    """The grade is recoverable from a map: the rule on the noiseless reference maps, in MNI space (identity
    registration), with the phantom's own ratio reproduces the phantom's grade."""
    case = generate_case(seed)
    result = assess_collaterals(case.reference_maps, case.brain_mask, case.perfusion_affine, rule=TRUTH_RULE)
    assert result.cps == case.truth["collateral_grade"]
    assert result.ischaemic_side == case.stroke.side and result.side_source == "maps"
    for phase in CPS_PHASES:
        assert result.hypoperfused_fraction[phase] == pytest.approx(case.truth["hypoperfused_fraction"][phase],
                                                                    abs=0.08)


@pytest.mark.slow
def test_a_head_turned_15_degrees_gets_the_same_grade():
    """Registration of the baseline puts the turned head back; the fractions move by resampling only."""
    case = generate_case(2, modality="dce")
    turned, pose = turn_in_plane(case.perfusion, case.perfusion_affine, 15.0)
    results = []
    for series, true_pose in ((case.perfusion, np.eye(4)), (turned, pose)):
        prep = prepare_perfusion(series, case.perfusion_affine, case.frame_seconds, frames=60, frame_interval=1.6,
                                 slices=20, height=128, width=128)
        assert prep.registration is not None
        assert registration_error_mm(prep.registration.native_to_mni, true_pose) < 2.0
        maps = collateral_maps(series.astype(np.float32), "dce")
        to_mni = prep.registration.native_to_mni @ case.perfusion_affine
        results.append(assess_collaterals(maps.maps, maps.mask, to_mni))
    assert results[0].cps == results[1].cps
    assert results[0].ischaemic_side == results[1].ischaemic_side == case.stroke.side
    for phase in CPS_PHASES:
        assert results[0].hypoperfused_fraction[phase] == pytest.approx(results[1].hypoperfused_fraction[phase],
                                                                        abs=0.05)


@pytest.mark.slow
def test_too_little_territory_is_refused_with_the_reason():
    case = generate_case(0)
    x_mm = np.arange(case.brain_mask.shape[0]) * case.perfusion_affine[0, 0] + case.perfusion_affine[0, 3]
    one_side = case.brain_mask & (x_mm > 0)[:, None, None]  # nothing to compare the left territory with
    with pytest.raises(InputValidationError, match="covers .* voxels of the .* MCA territory"):
        assess_collaterals(case.reference_maps, one_side, case.perfusion_affine, side="left")


def test_the_shipped_rule_is_fitted_and_in_range(tmp_path):
    rule = default_rule()
    assert set(rule.ratios) == set(CPS_PHASES) and all(0.0 < r < 1.0 for r in rule.ratios.values())
    assert "seeds 1100000" in rule.fitted_on  # fitted on training seeds only
    (tmp_path / "bad.json").write_text('{"ratios": {}}')
    with pytest.raises(InputValidationError, match="not a CPS rule"):
        CPSRule.load(tmp_path / "bad.json")
    ratios = dict.fromkeys(CPS_PHASES, 0.3)
    assert CPSRule.from_dict({"ratios": ratios, "floor": 0.1}, "a card").ratios == ratios
    for broken in ({"ratios": {**ratios, "capillary": 1.2}, "floor": 0.1}, {"ratios": ratios, "floor": -0.5},
                   {"ratios": ratios, "floor": "low"}, ["not", "a", "rule"]):
        with pytest.raises(InputValidationError, match="^a card: not a CPS rule"):
            CPSRule.from_dict(broken, "a card")

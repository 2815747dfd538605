"""Every quality gate trips on the value it guards against, passes a normal one, and withholds the decisions."""

from __future__ import annotations

import pytest

from collat_ensemble import quality

NORMAL = {"similarity": 0.92, "coverage": 1.0, "scale": 0.9, "brain_ml": 1300.0}


@pytest.mark.parametrize("field, value, name, words", [
    ("similarity", 0.7, "registration_similarity", "overlaps the MNI template poorly"),
    ("coverage", 0.3, "template_coverage", "covers 30% of the brain"),
    ("scale", 1.6, "head_scale", "1.60 times the template's size"),
    ("scale", 0.6, "head_scale", "0.60 times the template's size"),
    ("brain_ml", 300.0, "brain_volume_ml", "measures 300 mL"),
    ("brain_ml", 4000.0, "brain_volume_ml", "measures 4000 mL"),
])
def test_each_registration_gate_trips(field, value, name, words):
    checks = {c.name: c for c in quality.registration_checks(**{**NORMAL, field: value})}
    assert checks[name].verdict == "fail" and words in checks[name].reason
    assert all(c.verdict == "pass" and c.reason == "" for n, c in checks.items() if n != name)


def test_normal_values_pass_every_registration_gate():
    assert [c.verdict for c in quality.registration_checks(**NORMAL)] == ["pass"] * 4


def test_the_b_value_gate():
    assert quality.b_value_check(1000.0).verdict == "pass"
    assert quality.b_value_check(None).verdict == "unknown"  # reported, not failed: NIfTI carries no b-value
    failed = quality.b_value_check(2500.0)
    assert set(failed.withholds) == {"defuse3", "dawn", "hypoperfusion"}  # the core and the lesion read off it too
    assert failed.verdict == "fail" and "2500" in failed.reason and "b=1000" in failed.reason


def test_a_core_larger_than_a_hemisphere_is_a_misread_adc():
    failed = quality.core_check(700.0, 1300.0)
    assert failed.verdict == "fail" and "misread" in failed.reason
    assert set(failed.withholds) == {"defuse3", "dawn", "hypoperfusion"}
    assert quality.core_check(20.0, 1300.0).verdict == "pass"


def test_a_lesion_larger_than_a_hemisphere_is_withheld_as_outside_training_not_a_misread():
    failed = quality.lesion_checks(700.0, 0.0, 1300.0, "left", 0.95)[0]
    assert failed.name == "hypoperfusion_within_hemisphere" and failed.verdict == "fail"
    assert "outside what the network was trained on" in failed.reason and "misread" not in failed.reason
    assert failed.withholds == ("hypoperfusion", "defuse3")  # DAWN reads the core, not the lesion
    assert [c.verdict for c in quality.lesion_checks(120.0, 20.0, 1300.0, "left", 0.95)] == ["pass", "pass"]


def test_a_lesion_mostly_on_the_other_side_is_withheld():
    on_side = {c.name: c for c in quality.lesion_checks(80.0, 5.0, 1300.0, "right", 0.3)}["hypoperfusion_on_side"]
    assert on_side.verdict == "fail" and "30%" in on_side.reason and "right hemisphere" in on_side.reason
    assert {c.name: c for c in quality.lesion_checks(80.0, 5.0, 1300.0, "right", 0.7)}[
        "hypoperfusion_on_side"].verdict == "pass"
    unknown = {c.name: c for c in quality.lesion_checks(0.5, 0.2, 1300.0, "left", None)}["hypoperfusion_on_side"]
    assert unknown.verdict == "unknown" and not quality.withheld([unknown.as_dict()], "hypoperfusion")
    assert unknown.reason == "less than 1 mL of lesion beyond the core: where it lies says nothing"
    assert [c.name for c in quality.lesion_checks(80.0, 5.0, 1300.0, "bilateral", None)] == [
        "hypoperfusion_within_hemisphere"]  # emboli in both hemispheres: no side to hold them to


def test_a_side_the_core_contradicts_withholds_the_lesion():
    """A real left stroke told "right" got a 61 mL right-hemisphere lesion and a DEFUSE 3 "yes" (ISLES'22 case 9)."""
    wrong = quality.core_side_check("right", 2.1, 0.0)
    assert wrong.verdict == "fail" and wrong.withholds == quality.LESION
    assert "side given is right" in wrong.reason and "0% of the 2.1 mL ADC core" in wrong.reason
    assert quality.core_side_check("left", 2.1, 0.9).verdict == "pass"
    assert quality.core_side_check("left", 30.0, 0.4).verdict == "pass"  # a core across the midline, mostly right
    small = quality.core_side_check("left", 0.3, None)  # a lacune: too little core to hold the side to
    assert small.verdict == "unknown" and not quality.withheld([small.as_dict()], "hypoperfusion")
    assert small.reason == "no ADC core of 1 mL or more to hold the side to"  # said as not checked, not as wrong


def test_no_side_and_no_core_is_not_run_with_what_would_let_it_run():
    failed = quality.assessable_check("unknown")
    assert failed.verdict == "fail" and "not run" in failed.reason and "left, right or bilateral" in failed.reason
    assert quality.withheld([failed.as_dict()], "hypoperfusion") and quality.withheld([failed.as_dict()], "defuse3")
    assert not quality.withheld([failed.as_dict()], "dawn")
    assert quality.assessable_check("left").verdict == "pass"


ENVELOPE = quality.TrainingDomain.from_dict({"core_ml": {"min": 0.0}, "lesion_ml_by_core": {
    "0.25": 3.0, "0.5": 4.0, "1": 60.0, "5": 180.0, "100": 420.0}})


def test_the_lesion_envelope_holds_a_normal_brain_and_a_lacune_to_what_training_drew_around_such_cores():
    normal = quality.lesion_domain_check(183.3, 0.0, ENVELOPE)
    assert normal.verdict == "fail" and normal.withholds == ("hypoperfusion", "defuse3")
    assert "no diffusion lesion" in normal.reason and "183 mL" in normal.reason and "misread" not in normal.reason
    assert normal.limit.startswith("<= 9 mL")  # 1.25 x 3 mL + 5 mL, from the cores of at most 0.25 mL
    lacune = quality.lesion_domain_check(40.0, 0.2, ENVELOPE)  # reach max(0.3, 0.45) -> the 0.5 mL bound
    assert lacune.verdict == "fail" and "0.2 mL ADC core" in lacune.reason
    assert quality.lesion_domain_check(6.0, 0.2, ENVELOPE).verdict == "pass"
    assert quality.lesion_domain_check(200.0, 3.0, ENVELOPE).verdict == "pass"  # reach 4.5 -> 5 mL: 180 x 1.25 + 5
    assert quality.lesion_domain_check(900.0, 60.0, ENVELOPE).verdict == "fail"  # reach 90 -> 100 mL: <= 530 mL
    beyond = quality.lesion_domain_check(500.0, 150.0, ENVELOPE)  # beyond every bound: the hemisphere check holds it
    assert beyond.verdict == "pass"


def test_an_envelope_must_hold_volumes():
    with pytest.raises(ValueError, match="lesion_ml_by_core"):
        quality.TrainingDomain.from_dict({"core_ml": {"min": 0.0}, "lesion_ml_by_core": {"1": -2.0}})
    assert quality.TrainingDomain.from_dict({"core_ml": {"min": 0.9}}).lesion_by_core == ()


def test_a_failed_check_withholds_the_decisions_with_its_reason():
    checks = quality.registration_checks(**{**NORMAL, "coverage": 0.3}) + [quality.b_value_check(None)]
    section = quality.summary([c.as_dict() for c in checks])
    assert section["decisions_withheld"] == [next(c.reason for c in checks if c.verdict == "fail")]
    assert quality.summary([c.as_dict() for c in quality.registration_checks(**NORMAL)])["decisions_withheld"] == []


DOMAIN = quality.TrainingDomain.from_dict({"core_ml": {"min": 0.9}, "cases": "a test's"})


def test_a_scan_without_a_core_loses_its_lesion_and_defuse3_but_keeps_dawn():
    """No diffusion lesion, for weights trained only on strokes with one: the lesion the U-Net draws is outside what
    it was trained on, withheld with DEFUSE 3 (which reads it); DAWN reads the core, the age and the NIHSS only."""
    failed = quality.core_domain_check(0.0, DOMAIN)
    assert failed.verdict == "fail" and failed.withholds == ("hypoperfusion", "defuse3")
    assert "core measures 0.0 mL" in failed.reason and "0.90 mL or more" in failed.reason
    assert "outside what the network was trained on (no diffusion lesion)" in failed.reason
    assert failed.limit == ">= 0.45 mL (half the smallest core the U-Net was trained on)"
    checks = [failed.as_dict()] + [c.as_dict() for c in quality.registration_checks(**NORMAL)]
    assert quality.withheld(checks, "defuse3") and quality.withheld(checks, "hypoperfusion")
    assert not quality.withheld(checks, "dawn")
    assert quality.summary(checks)["decisions_withheld"] == [failed.reason]


def test_a_small_core_inside_the_domain_passes_and_an_unrecorded_domain_is_reported():
    assert quality.core_domain_check(0.45, DOMAIN).verdict == "pass"
    assert quality.core_domain_check(120.0, DOMAIN).verdict == "pass"  # large cores: DEFUSE 3 says no by the core
    unknown = quality.core_domain_check(0.0, None)
    assert unknown.verdict == "unknown" and "records no training domain" in unknown.reason
    assert not quality.withheld([unknown.as_dict()], "defuse3")  # unknown is reported, it withholds nothing


@pytest.mark.parametrize("doc, words", [
    (None, "not a training domain"), ({"core_ml": {}}, "not a training domain"),
    ({"core_ml": {"min": "x"}}, "not a training domain"), ({"core_ml": {"min": -1}}, ">= 0 mL"),
    ({"core_ml": {"min": float("nan")}}, ">= 0 mL"),
])
def test_a_broken_training_domain_is_refused(doc, words):
    with pytest.raises(ValueError, match=words):
        quality.TrainingDomain.from_dict(doc)


def test_the_registration_gates_withhold_both_decisions():
    coverage = quality.registration_checks(**{**NORMAL, "coverage": 0.3})[1].as_dict()
    assert coverage["withholds"] == ["defuse3", "dawn"]
    assert quality.withheld([coverage], "defuse3") and quality.withheld([coverage], "dawn")

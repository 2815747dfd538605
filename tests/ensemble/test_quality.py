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
    assert failed.verdict == "fail" and "2500" in failed.reason and "b=1000" in failed.reason


def test_a_lesion_larger_than_a_hemisphere_is_a_misread_scan():
    assert quality.lesion_checks(1770.0, 576.0, 1300.0)[0].verdict == "fail"
    assert quality.lesion_checks(120.0, 20.0, 1300.0)[0].verdict == "pass"


def test_a_failed_check_withholds_the_decisions_with_its_reason():
    checks = quality.registration_checks(**{**NORMAL, "coverage": 0.3}) + [quality.b_value_check(None)]
    section = quality.summary([c.as_dict() for c in checks])
    assert section["decisions_withheld"] == [next(c.reason for c in checks if c.verdict == "fail")]
    assert quality.summary([c.as_dict() for c in quality.registration_checks(**NORMAL)])["decisions_withheld"] == []


DOMAIN = quality.TrainingDomain.from_dict({"core_ml": {"min": 0.9}, "cases": "a test's"})


def test_a_scan_without_a_core_loses_defuse3_but_keeps_dawn():
    """No diffusion lesion: the U-Net's hypoperfusion is its prior, so DEFUSE 3 (which reads it) is withheld; DAWN
    reads the core, the age and the NIHSS only."""
    failed = quality.core_domain_check(0.0, DOMAIN)
    assert failed.verdict == "fail" and failed.withholds == ("defuse3",)
    assert "core measures 0.0 mL" in failed.reason and "0.90 mL or more" in failed.reason
    assert failed.limit == ">= 0.45 mL (half the smallest core the U-Net was trained on)"
    checks = [failed.as_dict()] + [c.as_dict() for c in quality.registration_checks(**NORMAL)]
    assert quality.withheld(checks, "defuse3") and not quality.withheld(checks, "dawn")
    assert quality.summary(checks)["decisions_withheld"] == [failed.reason]


def test_a_small_core_inside_the_domain_passes_and_an_unrecorded_domain_is_reported():
    assert quality.core_domain_check(0.45, DOMAIN).verdict == "pass"
    assert quality.core_domain_check(120.0, DOMAIN).verdict == "pass"  # large cores: DEFUSE 3 says no by the core
    unknown = quality.core_domain_check(0.0, None)
    assert unknown.verdict == "unknown" and "records no training domain" in unknown.reason
    assert not quality.withheld([unknown.as_dict()], "defuse3")


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

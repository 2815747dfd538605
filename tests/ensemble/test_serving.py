"""The pipelines' Python steps as plain functions: validation, geometry round trips, metrics documents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collat_ensemble import quality
from collat_ensemble.errors import InputValidationError
from collat_ensemble.serving import context as ctx
from collat_ensemble.serving import diffusion, metrics, perfusion
from collat_ensemble.serving.perfusion import NetworkGrid

GRID = NetworkGrid.parse("60x12x64x64@1.6")


def test_network_grid_parses_and_prints_back():
    assert NetworkGrid(60, 1.6, 12, 64, 64) == GRID
    assert str(GRID) == "60x12x64x64@1.6"
    with pytest.raises(ValueError, match="TxDxHxW@seconds"):
        NetworkGrid.parse("60x12x64")


def test_context_round_trips_a_grid_exactly(case_left_poor):
    _, _, context = perfusion.preprocess(case_left_poor.perfusion, case_left_poor.perfusion_affine,
                                         np.array([1.6], np.float32), GRID)
    back = ctx.decode(ctx.encode(context))
    grid = ctx.grid_from_dict(back["perfusion"]["grid"])
    original = ctx.grid_from_dict(context["perfusion"]["grid"])
    np.testing.assert_array_equal(grid.grid_affine, original.grid_affine)
    assert grid.orientation == original.orientation and grid.input_shape == (128, 128, 20)


@pytest.mark.parametrize("raw, message", [
    (np.array([b"{not json"], dtype=object), "not UTF-8 JSON"),
    (np.array([b"[1, 2]"], dtype=object), "must be a JSON object"),
    (np.array([b"{}", b"{}"], dtype=object), "exactly one JSON document"),
])
def test_bad_context_or_clinical_json_is_named(raw, message):
    with pytest.raises(InputValidationError, match=message):
        ctx.decode(raw, "CLINICAL")


@pytest.mark.parametrize("clinical, message", [
    ({}, "must give nihss"),
    ({"nihss": 43}, "nihss must be an integer 0-42"),
    ({"nihss": 4.5}, "nihss must be an integer 0-42"),
    ({"nihss": True}, "nihss must be an integer 0-42"),
    ({"nihss": float("nan")}, "nihss must be an integer 0-42"),
    ({"nihss": float("inf")}, "nihss must be an integer 0-42"),
    ({"nihss": 10, "age": 12}, "age must be 18-120"),
    ({"nihss": 10, "side": "up"}, "side must be left, right, bilateral or unknown"),
    ({"nihss": 10, "onset_to_imaging_min": -5}, "onset_to_imaging_min"),
    ({"nihss": 10, "name": "Jane Doe"}, "unknown fields: name"),
])
def test_clinical_inputs_are_validated(clinical, message):
    with pytest.raises(InputValidationError, match=message):
        diffusion.ClinicalInputs.from_json(clinical)


def test_clinical_defaults_to_an_unknown_side_and_no_age():
    assert diffusion.ClinicalInputs.from_json({"nihss": 12}) == diffusion.ClinicalInputs(12, None, "unknown", None)


def test_perfusion_steps_return_maps_on_the_input_grid(case_left_poor):
    x, mask, context = perfusion.preprocess(case_left_poor.perfusion, case_left_poor.perfusion_affine,
                                            np.array([1.6], np.float32), GRID)
    assert x.shape == (1, 60, 12, 64, 64) and x.dtype == np.float32
    assert mask.shape == (12, 64, 64) and mask.dtype == np.uint8
    # A stand-in for the network: each phase is the mean input over a block of frames, scaled to [-1, 1].
    phases = np.stack([x[0, 10 * i: 10 * i + 10].mean(axis=0) for i in range(5)])[None] / 0.9
    maps, brain, part, timings = perfusion.postprocess(phases, mask, ctx.decode(ctx.encode(context)))
    assert maps.shape == (128, 128, 20, 5) and brain.shape == (128, 128, 20)
    assert set(timings) == {"preprocess_perfusion", "network_perfusion", "postprocess_collateral"}
    assert part["input_orientation"] == "RAS" and part["input_shape"] == [128, 128, 20, 60]
    # The brain volume is that of the returned mask on the input grid.
    voxel_ml = abs(np.linalg.det(case_left_poor.perfusion_affine[:3, :3])) / 1000.0
    assert part["brain_volume_ml"] == pytest.approx(brain.sum() * voxel_ml, rel=1e-4)


def test_postprocess_refuses_maps_that_do_not_fit_the_mask(case_left_poor):
    _, mask, context = perfusion.preprocess(case_left_poor.perfusion, case_left_poor.perfusion_affine,
                                            np.array([1.6], np.float32), GRID)
    with pytest.raises(InputValidationError, match="do not match the brain mask"):
        perfusion.postprocess(np.zeros((1, 5, 12, 32, 64), np.float32), mask, context)


def test_diffusion_steps_give_slabs_and_core_on_the_dwi_grid(case_left_poor):
    case = case_left_poor
    slabs, nihss, core, brain, context = diffusion.preprocess(case.dwi, case.adc, case.diffusion_affine,
                                                              case.diffusion_affine, {"nihss": 12, "age": 85})
    assert slabs.shape == (12, 4, 16, 128, 128) and nihss.shape == (12, 1)
    assert np.allclose(nihss, 12 / 21)
    probabilities = np.zeros((12, 1, 16, 128, 128), np.float32)  # a network that sees nothing beyond the core
    prob, lesion, core_mask, part, _ = diffusion.postprocess(probabilities, core, brain,
                                                             ctx.decode(ctx.encode(context)))
    assert prob.shape == lesion.shape == core_mask.shape == case.dwi.shape
    np.testing.assert_array_equal(lesion, core_mask)  # a network that sees nothing: the lesion is the core
    assert part["core_ml"] == pytest.approx(case.truth["core_ml"], rel=0.10)
    assert part["hypoperfusion_ml"] == part["core_ml"]  # the lesion always includes the core
    assert part["mismatch_ml"] == 0.0 and part["defuse3"]["eligible"] is False
    assert part["dawn"]["groups"]["A"] is (part["core_ml"] < 21.0)
    assert part["side"] == "left" and part["side_inferred"] is True
    with pytest.raises(InputValidationError, match="slab probabilities"):
        diffusion.postprocess(probabilities[:11], core, brain, context)


def _without_core(case):
    """The case's DWI/ADC with the stroke's ADC drop undone: a scan with no diffusion lesion."""
    return np.where(case.adc > 0, np.maximum(case.adc, 0.75e-3), case.adc).astype(np.float32)


def test_no_side_and_no_core_is_not_run_and_says_which_input_would_run_it(case_left_poor):
    case = case_left_poor
    adc = _without_core(case)
    slabs, nihss, core, brain, context = diffusion.preprocess(case.dwi, adc, case.diffusion_affine,
                                                              case.diffusion_affine, {"nihss": 12, "age": 70})
    assert slabs.shape == (1, 4, 16, 128, 128) and not slabs.any() and nihss.shape == (1, 1)  # nothing to read
    assert context["diffusion"]["side"] == "unknown" and context["diffusion"]["network_run"] is False
    prob, lesion, _, part, _ = diffusion.postprocess(np.zeros((1, 1, 16, 128, 128), np.float32), core, brain,
                                                     ctx.decode(ctx.encode(context)))
    assert not lesion.any() and part["core_ml"] == 0.0 and part["side_inferred"] is False
    assert part["hypoperfusion_ml"] is None and part["mismatch_ml"] is None and part["mismatch_ratio"] is None
    assert part["lesion_withheld"]["status"] == "not_run" and part["lesion_withheld"]["drawn_ml"] is None
    assert "left, right or bilateral" in part["lesion_withheld"]["reasons"][0]
    assert part["defuse3"] is None and part["dawn"] is not None  # DAWN reads the core, the age and the NIHSS
    document = metrics.document("hypoperfusion_pipeline", hypoperfusion=part, timings_ms={}, models={})
    assert not any("inferred" in w for w in document["warnings"])
    given = diffusion.preprocess(case.dwi, adc, case.diffusion_affine, case.diffusion_affine,
                                 {"nihss": 12, "side": "bilateral"})
    assert given[0].shape[0] == 12 and given[4]["diffusion"]["network_run"] is True
    channel = given[0][:, 3]  # "bilateral": the side channel is the whole brain, both hemispheres
    assert channel[:, :, :, :64].any() and channel[:, :, :, 64:].any()


def test_no_nihss_measures_the_core_and_does_not_run_the_u_net(case_left_poor):
    """A dataset or an order system without the score: the core stands, the network that reads the NIHSS is not
    run, DAWN (which needs it) is withheld, and the reason names the input that would run it."""
    case = case_left_poor
    slabs, nihss, core, brain, context = diffusion.preprocess(case.dwi, case.adc, case.diffusion_affine,
                                                              case.diffusion_affine, {"nihss": None, "age": 70})
    assert slabs.shape[0] == 1 and not slabs.any() and context["diffusion"]["network_run"] is False
    assert context["diffusion"]["side"] == "left"  # still inferred from the core
    _, lesion, core_mask, part, _ = diffusion.postprocess(np.zeros((1, 1, 16, 128, 128), np.float32), core, brain,
                                                          ctx.decode(ctx.encode(context)))
    assert part["core_ml"] == pytest.approx(case.truth["core_ml"], rel=0.10) and core_mask.any()
    assert part["hypoperfusion_ml"] is None and part["defuse3"] is None and part["dawn"] is None
    assert part["lesion_withheld"]["status"] == "not_run"
    assert part["lesion_withheld"]["reasons"] == ["no NIHSS was given: the hypoperfusion network was not run "
                                                  "(give the NIHSS, 0-42)"]
    assert part["clinical"]["nihss"] is None
    both = quality.assessable_check("unknown", nihss_given=False)
    assert both.reason.startswith("no stroke side was given and the ADC shows no core to infer it from and no NIHSS")
    assert both.reason.endswith("(give the side of the symptoms: left, right or bilateral and the NIHSS, 0-42)")


def _hypo_part(case, probabilities, side=None):
    clinical = {"nihss": 12, "age": 70, **({"side": side} if side else {})}
    slabs, _, core, brain, context = diffusion.preprocess(case.dwi, case.adc, case.diffusion_affine,
                                                          case.diffusion_affine, clinical)
    return diffusion.postprocess(np.broadcast_to(probabilities, (len(slabs), 1, 16, 128, 128)), core, brain,
                                 ctx.decode(ctx.encode(context)))


def test_a_whole_brain_lesion_is_withheld_but_kept_for_inspection(case_left_poor):
    _, lesion, _, part, _ = _hypo_part(case_left_poor, np.ones((1, 1, 16, 128, 128), np.float32))
    withheld = part["lesion_withheld"]
    assert withheld["status"] == "withheld" and withheld["drawn_ml"] > part["brain_volume_ml"] / 2
    assert lesion.sum() * 8e-3 == pytest.approx(withheld["drawn_ml"], abs=0.05)  # the mask still holds it
    assert part["hypoperfusion_ml"] is None and part["defuse3"] is None and part["dawn"] is not None
    failed = {c["name"] for c in part["quality"]["checks"] if c["verdict"] == "fail"}
    assert failed == {"hypoperfusion_within_hemisphere", "hypoperfusion_on_side"}
    assert all("outside what the network was trained on" in r for r in withheld["reasons"])


def test_a_lesion_on_the_other_side_from_the_side_given_is_withheld(case_left_poor):
    wrong = np.zeros((1, 1, 16, 128, 128), np.float32)
    wrong[..., 40:80, 80:100] = 1.0  # padded x columns 80-100: MNI x = +34..+74 mm, the right hemisphere
    part = _hypo_part(case_left_poor, wrong, side="left")[3]
    checks = {c["name"]: c for c in part["quality"]["checks"]}
    assert checks["hypoperfusion_on_side"]["verdict"] == "fail" and checks["hypoperfusion_on_side"]["value"] < 0.1
    assert checks["hypoperfusion_within_hemisphere"]["verdict"] == "pass"
    assert part["lesion_withheld"]["status"] == "withheld" and part["hypoperfusion_ml"] is None
    # The same lesion, told the right side: on the side given, but the left core says the side is wrong.
    right = _hypo_part(case_left_poor, wrong, side="right")[3]
    checks = {c["name"]: c for c in right["quality"]["checks"]}
    assert checks["hypoperfusion_on_side"]["verdict"] == "pass"
    assert checks["side_matches_core"]["verdict"] == "fail" and checks["side_matches_core"]["value"] < 0.1
    assert right["lesion_withheld"]["reasons"] == [checks["side_matches_core"]["reason"]]
    assert right["hypoperfusion_ml"] is None and right["defuse3"] is None and right["dawn"] is not None
    assert {c["name"]: c for c in part["quality"]["checks"]}["side_matches_core"]["verdict"] == "pass"


def test_merged_document_flags_disagreeing_sides_and_keeps_both_parts():
    collateral = metrics.document("collateral_pipeline", collateral={"ischaemic_side": "right", "side_source": "maps"},
                                  timings_ms={"a": 1.0}, models={"mrod_net": {}})
    hypo_part = {"side": "left", "side_inferred": False, "adc_units_assumed": "mm2/s",
                 "defuse3": {"near_threshold": ["core_ml"]}, "dawn": None}
    hypo = metrics.document("hypoperfusion_pipeline", hypoperfusion=hypo_part, timings_ms={"b": 2.0},
                            models={"hypoperfusion_unet": {}})
    merged = metrics.merge("stroke_triage", collateral, hypo)
    assert merged["pipeline"] == "stroke_triage"
    assert merged["near_threshold"] == ["defuse3.core_ml"]
    assert merged["timings_ms"] == {"a": 1.0, "b": 2.0}
    assert set(merged["models"]) == {"mrod_net", "hypoperfusion_unet"}
    assert any("check the images" in w for w in merged["warnings"])
    json.dumps(merged)  # serializable as it stands
    withheld = metrics.document("collateral_pipeline", collateral={"ischaemic_side": None, "side_source": None},
                                timings_ms={"a": 1.0}, models={"mrod_net": {}})
    assert not any("hemisphere" in w for w in metrics.merge("stroke_triage", withheld, hypo)["warnings"])


def test_the_largest_accepted_series_is_enforced_before_any_work():
    huge = np.broadcast_to(np.float32(1.0), (1024, 1024, 64, 5))  # 335 M elements, no memory behind it
    with pytest.raises(InputValidationError, match="more than the 268435456 this server accepts"):
        perfusion.preprocess(huge, np.eye(4), np.array([1.6], np.float32), GRID)
    with pytest.raises(InputValidationError, match="voxels, more than the 67108864 accepted"):
        diffusion.preprocess(np.broadcast_to(np.float32(1.0), (1024, 1024, 65)), np.zeros((2, 2, 2), np.float32),
                             np.eye(4), np.eye(4), {"nihss": 3})

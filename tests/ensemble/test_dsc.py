"""DSC series: converted to the enhancement the network reads, and graded only by a network trained on DSC."""

import numpy as np
import pytest

from collat_ensemble.contrast import DSC_CONVERSION, dsc_to_enhancement, trained_dsc_conversion
from collat_ensemble.phantom import generate_case
from collat_ensemble.preprocess import prepare_perfusion
from collat_ensemble.serving import perfusion

GRID = {"frames": 60, "frame_interval": 1.6, "slices": 12, "height": 64, "width": 64}


@pytest.fixture(scope="module")
def prepared_pair():
    return [prepare_perfusion(c.perfusion, c.perfusion_affine, c.frame_seconds, **GRID)
            for c in (generate_case(5, modality="dce"), generate_case(5, modality="dsc"))]


def test_a_dsc_series_reaches_the_network_as_the_dce_enhancement_of_the_same_patient(prepared_pair):
    dce, dsc = prepared_pair
    assert (dce.bolus.kind, dsc.bolus.kind) == ("DCE", "DSC")
    both = dce.mask & dsc.mask
    curves = [p.network_input[:, both].mean(axis=1) for p in prepared_pair]
    assert curves[1].argmax() == pytest.approx(curves[0].argmax(), abs=1)  # it rises where DCE rises
    assert np.corrcoef(curves[0], curves[1])[0, 1] > 0.97
    # voxel by voxel at the bolus peak: the same picture (noise and the arteries' saturated signal aside)
    peak = int(curves[0].argmax())
    assert np.corrcoef(dce.network_input[peak][both], dsc.network_input[peak][both])[0, 1] > 0.8


def test_conversion_1_is_delta_r2star_on_each_voxels_baseline():
    s0 = np.array([1000.0, 500.0], np.float32)[:, None]
    delta = np.array([0.0, 0.0, 0.0, 0.4, 1.2, 0.2], np.float32)[None, :]  # Delta R2* x TE per frame
    series = s0 * np.exp(-delta)
    out = dsc_to_enhancement(series[None, None], arrival=3, version="1")[0, 0]
    np.testing.assert_allclose(out, s0 * (1.0 + 1.25 * delta), rtol=1e-5)
    # a voxel that loses all its signal is capped, not infinite
    assert np.isfinite(dsc_to_enhancement(np.array([[[[100.0, 100.0, 100.0, 0.0]]]], np.float32))).all()


def test_conversion_2_adds_delta_r2star_on_one_reference_baseline_to_each_voxels_own():
    """S - S0 is Delta R2* to one scale in every voxel, as in the DSC reference maps (no S0 weighting)."""
    s0 = np.array([1000.0, 500.0, 900.0], np.float32)[:, None]
    delta = np.array([[0.0, 0.0, 0.0, 0.4, 1.2, 0.2], [0.0, 0.0, 0.0, 0.2, 0.6, 0.1], [0.0] * 6],
                     np.float32)  # Delta R2* x TE per frame
    series = s0 * np.exp(-delta)
    out = dsc_to_enhancement(series[None], arrival=3, mask=np.ones((1, 3), bool), version="2")[0]
    np.testing.assert_allclose(out, s0 + 900.0 * 1.25 * delta, rtol=1e-5)  # 900: the median baseline
    enhancement = out - s0
    np.testing.assert_allclose(enhancement[0], 2.0 * enhancement[1], rtol=1e-5)  # twice the agent, twice the rise
    assert DSC_CONVERSION == "2"  # what training uses now
    with pytest.raises(ValueError, match="unknown DSC conversion version '3'"):
        dsc_to_enhancement(series[None], version="3")


def test_the_conversion_of_weights_is_the_one_their_training_record_holds():
    assert trained_dsc_conversion({"modalities": ["dce", "dsc"], "dsc_conversion": "2"}) == "2"
    assert trained_dsc_conversion({"modalities": ["dce", "dsc"]}) == "1"  # trained before the field
    assert trained_dsc_conversion({"modalities": ["dce"]}) == DSC_CONVERSION  # never saw DSC
    with pytest.raises(ValueError, match="unknown DSC conversion"):
        trained_dsc_conversion({"dsc_conversion": "9"})


def _context(kind: str, registration: dict | None, problem: str = "") -> dict:
    return {"contrast": {"kind": kind, "signal_change": -0.2}, "registration": registration,
            "registration_problem": problem}


def test_a_modality_the_network_was_not_trained_on_gets_maps_but_no_grade(prepared_pair):
    dsc = prepared_pair[1]
    maps = np.zeros(dsc.grid.grid_shape + (5,), np.float32)
    mask = np.transpose(dsc.mask, (2, 1, 0))
    registration = dsc.registration.as_dict()
    withheld = perfusion.grade(maps, mask, dsc.grid.grid_affine, _context("DSC", registration), ["dce"])
    assert withheld["cps_estimate"] is None and withheld["cps_label"] is None
    assert withheld["cps_withheld"] == ("the served 3D-MROD-Net was trained on DCE only, not on DSC: the maps are "
                                        "shown, the grade is not")
    graded = perfusion.grade(maps, mask, dsc.grid.grid_affine, _context("DSC", registration), ["dce", "dsc"])
    assert graded["cps_estimate"] == 5 and graded["cps_withheld"] is None  # flat maps: nothing darker
    unknown = perfusion.grade(maps, mask, dsc.grid.grid_affine, _context("DCE", registration), [])
    assert "does not say which modalities" in unknown["cps_withheld"]
    lost = perfusion.grade(maps, mask, dsc.grid.grid_affine, _context("DCE", None, "the perfusion baseline could "
                                                                       "not be registered"), ["dce"])
    assert lost["cps_withheld"].startswith("the series could not be placed in template space (the perfusion baseline")

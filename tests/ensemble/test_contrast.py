"""The bolus rule: DCE rises, DSC dips and recovers, a fall without recovery or a flat series is no bolus."""

from __future__ import annotations

import numpy as np
import pytest

from collat_ensemble.contrast import MIN_BOLUS_CHANGE, detect_bolus
from collat_ensemble.phantom import generate_case
from collat_ensemble.phases import brain_mask


def series_with(curve: np.ndarray, noise: float = 0.002, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((8, 8, 4), bool)
    mask[2:6, 2:6] = True
    data = 100.0 * curve[None, None, None] * (1 + noise * rng.standard_normal((8, 8, 4, curve.size)))
    return data * mask[..., None] + 5.0, mask


T = np.arange(40)
FIRST_PASS = np.exp(-0.5 * ((T - 15) / 2.5) ** 2)


@pytest.mark.parametrize("curve, kind, change", [
    (1 + 0.3 * FIRST_PASS, "DCE", 0.3),
    (1 - 0.25 * FIRST_PASS, "DSC", -0.25),
    (1 - 0.25 * FIRST_PASS + 0.02 * (T > 15), "DSC", -0.25),  # leakage: the signal settles a little above
])
def test_a_first_pass_is_found_and_its_direction_named(curve, kind, change):
    bolus = detect_bolus(*series_with(curve))
    # the 3-frame average lowers a sharp peak by a few per cent
    assert bolus.kind == kind and bolus.signal_change == pytest.approx(change, abs=0.04) and bolus.reason == ""


def test_a_flat_series_and_a_fall_that_never_recovers_are_not_a_bolus():
    flat = detect_bolus(*series_with(1 + 0.01 * np.sin(T / 3.0)))
    assert flat.kind is None and "no contrast bolus" in flat.reason and abs(flat.signal_change) < MIN_BOLUS_CHANGE
    saturating = detect_bolus(*series_with(np.where(T < 10, 1.0, 0.8)))
    assert saturating.kind is None and "does not recover" in saturating.reason


def test_a_bright_first_frame_does_not_set_the_baseline():
    curve = 1 + 0.3 * FIRST_PASS
    curve[0] = 1.6  # steady state not yet reached
    assert detect_bolus(*series_with(curve)).kind == "DCE"


@pytest.mark.slow
@pytest.mark.parametrize("modality, kind", [("dce", "DCE"), ("dsc", "DSC")])
def test_the_phantoms_bolus_is_found_with_motion_too(modality, kind):
    for motion in (False, True):
        case = generate_case(5, modality=modality, motion=motion)
        assert detect_bolus(case.perfusion, brain_mask(case.perfusion)).kind == kind

"""The U-Net's lesion volume calibration: the lesion takes the calibrated volume in the network's order of
probability, never less than the core, never a voxel the network all but excluded."""

import math

import numpy as np
import pytest

from collat_ensemble.hypoperfusion import (
    MIN_CANDIDATE_PROBABILITY,
    VolumeCalibration,
    assess_hypoperfusion,
    calibrated_lesion,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm^3 voxels: 125 voxels make 1 mL
VOXEL_ML = 0.008


def _ramp() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A probability that falls off from a core at one corner, the core, and a brain that is everything."""
    idx = np.indices((20, 20, 20)).sum(axis=0).astype(np.float32)
    probability = np.clip(1.0 - idx / 40.0, 0.0, 1.0)
    core = idx < 6
    return probability, core, np.ones_like(core)


def test_the_calibrated_lesion_holds_the_target_volume_in_order_of_probability():
    probability, core, brain = _ramp()
    lesion, threshold = calibrated_lesion(probability, core, brain, VOXEL_ML, target_ml=20.0)
    assert float(lesion.sum()) * VOXEL_ML == pytest.approx(20.0, abs=0.4)  # ties at the cut may add a few voxels
    assert np.all(lesion[core]), "the core is always part of the lesion"
    assert probability[lesion & ~core].min() >= threshold > probability[~lesion].max() - 1e-6


def test_a_target_below_the_core_gives_the_core_and_one_beyond_the_candidates_stops_there():
    probability, core, brain = _ramp()
    lesion, threshold = calibrated_lesion(probability, core, brain, VOXEL_ML, target_ml=0.01)
    assert np.array_equal(lesion, core) and threshold == 1.0
    lesion, threshold = calibrated_lesion(probability, core, brain, VOXEL_ML, target_ml=1e6)
    assert np.array_equal(lesion, core | (probability >= MIN_CANDIDATE_PROBABILITY))
    outside = ~np.ones_like(brain)
    assert not calibrated_lesion(probability, core, outside, VOXEL_ML, 30.0)[0][~core].any(), "brain only"


def test_assessment_reports_the_network_volume_and_the_cut_beside_the_calibrated_one():
    probability, core, brain = _ramp()
    plain = assess_hypoperfusion(probability, core, brain, AFFINE, nihss=10, age=70)
    assert plain.threshold == 0.5 and plain.calibration is None
    assert plain.network_ml == pytest.approx(plain.hypoperfusion_ml)
    # A calibration that doubles the volume: log(1 + V) = log(1 + V_net) + log 2 (about, for large volumes).
    doubling = VolumeCalibration(math.log(2.0), 1.0, 0.0, 0.0, "test")
    calibrated = assess_hypoperfusion(probability, core, brain, AFFINE, nihss=10, age=70, calibration=doubling)
    assert calibrated.network_ml == pytest.approx(plain.network_ml)
    assert calibrated.hypoperfusion_ml == pytest.approx(2 * plain.network_ml + 1, rel=0.02)
    assert calibrated.threshold < 0.5
    rule = calibrated.as_metrics()["lesion_rule"]
    assert rule["calibrated"] and rule["network_ml"] == round(plain.network_ml, 2)
    assert rule["calibration"]["coefficients"]["intercept"] == pytest.approx(math.log(2.0))
    assert calibrated.mismatch.volume_ml == pytest.approx(calibrated.hypoperfusion_ml - calibrated.core_ml)


def test_calibration_documents_round_trip_and_broken_ones_are_refused():
    calibration = VolumeCalibration(-2.5, 2.9, -2.1, 0.04, "phantom seeds")
    assert VolumeCalibration.from_dict(calibration.as_dict()) == calibration
    assert calibration.expected_ml(30.0, 5.0, 8) == pytest.approx(
        math.expm1(-2.5 + 2.9 * math.log1p(30.0) - 2.1 * math.log1p(5.0) + 0.04 * 8))
    for broken in ({}, {"coefficients": {"intercept": 1.0}}, {"coefficients": {"intercept": "x", "network": 1,
                                                                                 "core": 0, "nihss": 0}},
                   {"coefficients": {"intercept": float("nan"), "network": 1, "core": 0, "nihss": 0}}, None):
        with pytest.raises(ValueError, match="calibration"):
            VolumeCalibration.from_dict(broken)

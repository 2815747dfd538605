import numpy as np
import pytest

from collat_client.imaging.evaluation import auc, dice, mae, phase_metrics, r2, ssim, tanimoto, volume_difference_ml


def test_r2_and_mae_hand_computed():
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    assert r2(2 * ref + 1, ref) == pytest.approx(1.0)
    assert r2(np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(0.0)
    assert mae(ref + 0.5, ref) == pytest.approx(0.5)
    mask = np.array([True, True, False, False])
    assert mae(np.array([0.0, 1.0, 9.0, 9.0]), ref, mask) == 0.0


def test_tanimoto_on_shifted_maps():
    a = np.array([1.0, -1.0])  # -> [1, 0]
    b = np.array([1.0, 1.0])   # -> [1, 1]
    # sum(ab)=1, sum(a2)=1, sum(b2)=2 -> 1 / (1 + 2 - 1)
    assert tanimoto(a, b) == pytest.approx(0.5)
    assert tanimoto(b, b) == pytest.approx(1.0)


def test_ssim_is_one_for_identical_and_drops_with_noise():
    rng = np.random.default_rng(0)
    vol = np.clip(rng.normal(0.5, 0.25, (20, 20, 10)), 0, 1)
    assert ssim(vol, vol) == pytest.approx(1.0)
    noisy = ssim(vol + rng.normal(0, 0.15, vol.shape), vol)
    assert 0.0 < noisy < 0.9


def test_phase_metrics_table():
    rng = np.random.default_rng(1)
    ref = rng.uniform(-1, 1, (12, 12, 6, 5))
    mask = np.ones(ref.shape[:3], bool)
    table = phase_metrics(ref, ref, mask)
    assert set(table) == {"arterial", "capillary", "early_venous", "late_venous", "delay", "mean"}
    assert table["mean"]["r2"] == pytest.approx(1.0) and table["mean"]["mae"] == 0.0


def test_dice_auc_and_volumes_hand_computed():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert auc(np.array([0.1, 0.9, 0.5, 0.5]), np.array([1, 0, 1, 0])) == pytest.approx(0.125)
    assert np.isnan(auc(np.array([0.3, 0.4]), np.array([0, 0])))
    assert volume_difference_ml(a, np.ones(4, bool), voxel_ml=0.008) == pytest.approx((-0.016, 0.016))

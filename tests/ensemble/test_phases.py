import numpy as np
import pytest

from collat_client.imaging.evaluation import phase_metrics
from collat_ensemble.errors import InputValidationError
from collat_ensemble.phantom import generate_case
from collat_ensemble.phases import collateral_maps


@pytest.mark.slow
def test_conventional_maps_of_the_acquired_series_match_the_truth(case_left_poor):
    clean = generate_case(101, strength=1, side="left", snr=300.0)
    result = collateral_maps(clean.perfusion.astype(np.float32), "dce")
    table = phase_metrics(result.maps, clean.reference_maps, clean.brain_mask & result.mask)
    assert table["mean"]["r2"] > 0.95 and table["mean"]["ssim"] > 0.9
    assert result.windows.as_dict() == clean.truth["reference_windows"]
    # at the default SNR of 30, two-frame windows are noisy but still clearly the same maps
    noisy = collateral_maps(case_left_poor.perfusion.astype(np.float32), "dce")
    assert phase_metrics(noisy.maps, case_left_poor.reference_maps, noisy.mask & case_left_poor.brain_mask)[
        "mean"]["r2"] > 0.6


def test_orientation_does_not_change_the_maps(case_left_poor):
    c = case_left_poor
    flipped = c.perfusion[::-1, :, ::-1].astype(np.float32)
    maps = collateral_maps(flipped, "dce").maps[::-1, :, ::-1]
    np.testing.assert_allclose(maps, collateral_maps(c.perfusion.astype(np.float32), "dce").maps, atol=1e-5)


def test_no_bolus_and_short_series_fail_clearly():
    rng = np.random.default_rng(0)
    head = np.zeros((16, 16, 4, 30), np.float32)
    head[3:13, 3:13] = 1000.0
    flat = head + rng.normal(0, 5, size=head.shape).astype(np.float32)
    with pytest.raises(InputValidationError, match="no bolus found"):
        collateral_maps(flat, "dce")
    with pytest.raises(InputValidationError, match="too few frames: 5"):
        collateral_maps(flat[..., :5], "dce")
    with pytest.raises(InputValidationError, match="NaN"):
        bad = flat.copy()
        bad[0, 0, 0, 0] = np.nan
        collateral_maps(bad, "dce")

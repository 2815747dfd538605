import json

import nibabel as nib
import numpy as np
import pytest

from collat_ensemble.errors import InputValidationError
from collat_ensemble.phantom import CASE_FILES, generate_case, write_case
from collat_ensemble.phases import PHASE_NAMES


@pytest.mark.slow
def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_case(generate_case(5, snr=20.0), a)
    write_case(generate_case(5, snr=20.0), b)
    for name in (*CASE_FILES.values(), "truth.json"):
        assert nib.load(a / name).get_fdata().tobytes() == nib.load(b / name).get_fdata().tobytes() \
            if name.endswith(".nii.gz") else (a / name).read_bytes() == (b / name).read_bytes()
    other = generate_case(6, snr=20.0)
    assert not np.array_equal(other.perfusion, generate_case(5, snr=20.0).perfusion)


def test_files_carry_affines_and_frame_time(tmp_path, case_left_poor):
    files = write_case(case_left_poor, tmp_path)
    perf = nib.load(files["perfusion"])
    assert perf.shape == (128, 128, 20, 60)
    assert perf.header.get_zooms()[3] == pytest.approx(1.6)
    assert perf.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(perf.affine, case_left_poor.perfusion_affine, atol=1e-5)
    np.testing.assert_allclose(np.abs(np.diag(perf.affine))[:3], [1.875, 1.875, 7.0])
    dwi = nib.load(files["dwi"])
    assert dwi.shape == (91, 109, 60) and dwi.header.get_zooms() == (2.0, 2.0, 2.0)
    truth = json.loads(files["truth"].read_text())
    assert truth["side"] == "left" and truth["collateral_grade"] == 1
    assert set(truth["files"]) == set(CASE_FILES)
    assert not list(tmp_path.glob(".*partial*"))


def test_ischaemic_side_is_late_and_dark_in_the_capillary_phase(case_left_poor):
    c = case_left_poor
    x_world = (np.arange(128) * c.perfusion_affine[0, 0] + c.perfusion_affine[0, 3])[:, None, None]
    brain = c.brain_mask & (np.abs(x_world) > 20)
    left, right = brain & (x_world < 0), brain & (x_world > 0)
    cap = c.reference_maps[..., PHASE_NAMES.index("capillary")]
    late = c.reference_maps[..., PHASE_NAMES.index("delay")]
    assert cap[left].mean() < cap[right].mean() - 0.05
    assert late[left].mean() > late[right].mean()
    xd = (np.arange(91) * 2.0 - 90.0)[:, None, None]
    assert c.tmax[np.broadcast_to(xd < -20, c.tmax.shape)].max() > 6.0
    assert c.tmax[np.broadcast_to(xd > 20, c.tmax.shape)].max() < 6.0


def test_core_lies_inside_the_lesion_with_low_adc(case_left_poor):
    c = case_left_poor
    assert c.core.any() and np.all(c.lesion[c.core])
    assert c.adc[c.core].max() < 620e-6 * 1.2
    assert c.lesion.sum() > c.core.sum()
    assert c.truth["hypoperfusion_ml"] > c.truth["core_ml"] > 0


def test_hypoperfused_tissue_beyond_the_core_shows_its_mild_adc_decline(case_left_poor):
    """Phantom v3: the Tmax > 6 s tissue outside the core diffuses 6 % less than its mirror, well above the core
    threshold; so the hypoperfusion is on the diffusion images, as the U-Net's task needs."""
    c = case_left_poor
    adc = np.where(c.core, np.nan, c.adc)
    mirror = adc[::-1]  # the MNI 2 mm grid is symmetric about x = 0 (91 columns, the midline the middle one)
    penumbra = c.lesion & ~c.core & (c.tmax > 6.5) & ~c.core[::-1] & ~c.lesion[::-1]
    penumbra &= (c.adc > 0.6e-3) & (c.adc < 1.0e-3) & (mirror > 0.6e-3) & (mirror < 1.0e-3)  # tissue, no CSF
    assert penumbra.sum() > 1000
    ratio = float(np.nanmedian(adc[penumbra] / mirror[penumbra]))
    assert ratio == pytest.approx(0.94, abs=0.01)
    assert np.nanpercentile(adc[penumbra], 1) > 620e-6  # not core
    healthy = ~c.lesion & ~c.lesion[::-1] & (c.adc > 0.6e-3) & (c.adc < 1.0e-3) & (mirror > 0.6e-3) & (mirror < 1.0e-3)
    assert float(np.nanmedian(adc[healthy] / mirror[healthy])) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_better_collaterals_mean_smaller_lesions():
    grades = [generate_case(7, strength=g, side="right") for g in (0, 5)]
    assert grades[0].truth["hypoperfusion_ml"] > 3 * grades[1].truth["hypoperfusion_ml"]
    assert grades[0].truth["core_ml"] > grades[1].truth["core_ml"]


@pytest.mark.slow
def test_dsc_signal_drops_and_motion_moves():
    dsc = generate_case(8, modality="dsc", snr=1e6)
    mean = dsc.perfusion.reshape(-1, 60)[dsc.brain_mask.ravel()].mean(axis=0)
    assert mean.min() < 0.95 * mean[:5].mean()
    still, moved = generate_case(9, snr=1e6), generate_case(9, snr=1e6, motion=True)
    assert not np.array_equal(still.perfusion, moved.perfusion)


@pytest.mark.slow
def test_templates_are_read_once_and_resampled_once_per_grid():
    """What keeps case generation fast (training makes thousands): no case re-reads or re-resamples the atlas."""
    from collat_ensemble.phantom import anatomy

    generate_case(10)
    loads, grids = anatomy.load_templates.cache_info(), anatomy._cached.cache_info()
    generate_case(11, modality="dsc")
    assert anatomy.load_templates.cache_info().misses == loads.misses
    assert anatomy._cached.cache_info().misses == grids.misses
    assert anatomy._cached.cache_info().hits > grids.hits


def test_bad_parameters_are_named():
    with pytest.raises(InputValidationError, match="strength"):
        generate_case(1, strength=7)
    with pytest.raises(InputValidationError, match="modality"):
        generate_case(1, modality="ct")  # type: ignore[arg-type]


@pytest.mark.slow
def test_cli_writes_a_case_and_refuses_bad_options(tmp_path):
    import subprocess
    import sys

    run = [sys.executable, "-m", "collat_ensemble.phantom.cli"]
    ok = subprocess.run([*run, "--out", str(tmp_path / "c"), "--seed", "3", "--strength", "2", "--side", "right"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    truth = json.loads((tmp_path / "c" / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["collateral_strength"] == 2
    assert f"grade {truth['collateral_grade']} right" in ok.stdout
    bad = subprocess.run([*run, "--out", str(tmp_path / "d"), "--seed", "3", "--strength", "9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not (tmp_path / "d").exists()

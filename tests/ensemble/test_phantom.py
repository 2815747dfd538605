import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from collat_ensemble.clinical import collateral_perfusion_score
from collat_ensemble.errors import InputValidationError
from collat_ensemble.phantom import CASE_FILES, generate_case, write_case
from collat_ensemble.phantom.grades import version_4_strength
from collat_ensemble.phases import PHASE_NAMES
from collat_ensemble.territory import CPS_PHASES


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
    ok = subprocess.run([*run, "--out", str(tmp_path / "c"), "--seed", "3", "--grade", "0", "--side", "right"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    truth = json.loads((tmp_path / "c" / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["requested_grade"] == truth["collateral_grade"] == 0
    assert "grade 0 right" in ok.stdout
    both = subprocess.run([*run, "--out", str(tmp_path / "e"), "--seed", "3", "--grade", "1", "--strength", "2"],
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr and not (tmp_path / "e").exists()
    bad = subprocess.run([*run, "--out", str(tmp_path / "d"), "--seed", "3", "--strength", "9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not (tmp_path / "d").exists()


# --- Phantom version 4: what hospitals scan -------------------------------------------------------------------------

# Fingerprints of MCA cases recorded with phantom version 3 before version 4 existed (the 3D-MROD-Net's training
# caches and evaluations depend on these arrays): four voxels' signal every sixth frame, the reference maps' mean per
# phase, the brain mask's voxel count and the collateral grade. Not byte digests: the float maths behind the int16
# series rounds a voxel either way on another CPU (AVX2 against AVX-512), while a new random draw moves every
# sampled value by the noise (tens of units).
FINGERPRINT_VOXELS = ((40, 64, 10), (88, 64, 10), (64, 40, 12), (64, 90, 8))
MCA_FINGERPRINTS = {
    (0, "dce"): ([[1069, 996, 1240, 1117, 1108, 1052, 1082, 1035, 1038, 1013],
                  [1023, 1031, 1184, 1155, 1150, 1107, 1086, 1062, 1060, 1050],
                  [751, 814, 857, 729, 736, 799, 767, 811, 791, 800],
                  [1103, 1101, 1259, 1139, 1053, 1121, 1149, 1061, 1109, 1167]],
                 [-0.77826, -0.70452, -0.67993, -0.71532, -0.74521], 78122, 5),
    (0, "dsc"): ([[1069, 996, 900, 935, 1037, 1029, 1076, 1034, 1037, 1013],
                  [1023, 1031, 880, 1053, 1116, 1097, 1084, 1061, 1060, 1050],
                  [751, 814, 681, 674, 718, 794, 766, 810, 791, 800],
                  [1103, 1101, 1054, 1058, 1024, 1112, 1147, 1060, 1108, 1167]],
                 [-0.78363, -0.71285, -0.68735, -0.7172, -0.74552], 80090, 5),
    (1, "dce"): ([[1094, 1024, 1229, 1055, 1038, 998, 1033, 1048, 1035, 999],
                  [1111, 1043, 1030, 1164, 1127, 1066, 1059, 1118, 1058, 1027],
                  [769, 740, 842, 854, 829, 793, 763, 807, 799, 793],
                  [1146, 1101, 1252, 1160, 1114, 1118, 1066, 1094, 1034, 1064]],
                 [-0.77879, -0.70606, -0.681, -0.73882, -0.84298], 78122, 3),
    (1, "dsc"): ([[1094, 1024, 892, 943, 999, 988, 1031, 1048, 1035, 999],
                  [1111, 1043, 1030, 922, 984, 998, 1031, 1108, 1055, 1026],
                  [769, 740, 666, 799, 811, 788, 762, 806, 799, 793],
                  [1146, 1101, 1049, 1080, 1085, 1110, 1064, 1093, 1034, 1064]],
                 [-0.77351, -0.69877, -0.67436, -0.73988, -0.84894], 80090, 3),
    (5, "dce"): ([[1056, 1026, 1209, 1056, 1093, 1040, 1111, 1079, 958, 1064],
                  [1050, 1033, 1146, 1171, 1108, 1098, 1129, 1094, 985, 1029],
                  [757, 771, 903, 845, 821, 773, 758, 800, 804, 779],
                  [1161, 1113, 1197, 1151, 1158, 1148, 1154, 1122, 1041, 1162]],
                 [-0.7852, -0.71377, -0.68642, -0.77203, -0.82717], 78122, 2),
    (5, "dsc"): ([[1056, 1026, 870, 943, 1054, 1030, 1108, 1079, 958, 1064],
                  [1050, 1033, 1085, 930, 999, 1055, 1115, 1089, 984, 1028],
                  [757, 771, 724, 788, 802, 768, 757, 800, 804, 779],
                  [1161, 1113, 993, 1071, 1129, 1139, 1152, 1122, 1041, 1162]],
                 [-0.78028, -0.70648, -0.69454, -0.78074, -0.8333], 80088, 2),
}


def assert_version_3_perfusion(case, key: tuple[int, str]) -> None:
    """The case's perfusion, reference maps, mask and grade are version 3's (within one unit of rounding)."""
    curves, map_means, mask_voxels, grade = MCA_FINGERPRINTS[key]
    sampled = np.array([[case.perfusion[v][t] for t in range(0, 60, 6)] for v in FINGERPRINT_VOXELS])
    assert np.abs(sampled.astype(int) - np.array(curves)).max() <= 1
    means = case.reference_maps.astype(np.float64).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(means, map_means, atol=1e-4)
    assert int(case.brain_mask.sum()) == mask_voxels and case.truth["collateral_grade"] == grade


@pytest.mark.parametrize("key", [pytest.param(k, marks=() if k == (1, "dce") else pytest.mark.slow)
                                 for k in MCA_FINGERPRINTS])
def test_mca_perfusion_keeps_its_version_3_bytes(key):
    """Versions 4 and 5 draw nothing new from the main stream before the perfusion is complete: an MCA case asked
    for by the collateral strength version 3 drew for its seed has the perfusion series, reference maps, brain mask
    and collateral grade it had before (version 5's default draws a grade instead)."""
    seed, modality = key
    case = generate_case(seed, modality=modality, strength=version_4_strength(seed))
    assert case.kind == "mca" and case.truth["kind"] == "mca" and case.truth["phantom_version"] == "5"
    assert case.truth["requested_grade"] is None and case.truth["mca_profile"] == 2.0
    assert_version_3_perfusion(case, key)
    assert case.perfusion.dtype == np.int16 and case.perfusion.shape == (128, 128, 20, 60)


@pytest.mark.slow
def test_mca_perfusion_does_not_depend_on_the_diffusion_space_or_an_explicit_kind():
    native = generate_case(1, space="native", kind="mca", strength=version_4_strength(1))
    assert_version_3_perfusion(native, (1, "dce"))
    assert native.truth["side"] == native.truth["clinical_side"] == native.stroke.side
    graded = generate_case(1, space="native")  # version 5's default: drawn for a grade, the same in either space
    assert np.array_equal(graded.perfusion, generate_case(1, kind="mca").perfusion)
    assert graded.truth["requested_grade"] == graded.truth["collateral_grade"]


_CASES: dict[tuple[str, int], object] = {}


def native_case(kind: str, seed: int):
    """Native-space cases, made once per session (several tests read the same one)."""
    if (kind, seed) not in _CASES:
        _CASES[(kind, seed)] = generate_case(seed, kind=kind, space="native")
    return _CASES[(kind, seed)]


def _mni(case, mask: np.ndarray) -> np.ndarray:
    """MNI mm of a native-space case's voxels in ``mask`` (through its true pose)."""
    ijk = np.argwhere(mask).astype(float)
    native = ijk @ case.diffusion_affine[:3, :3].T + case.diffusion_affine[:3, 3]
    to_mni = np.linalg.inv(case.mni_to_native)
    return native @ to_mni[:3, :3].T + to_mni[:3, 3]


def _ungraded(case) -> None:
    assert case.truth["collateral_grade"] is None and case.truth["hypoperfused_fraction"] == {}


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_lacune_is_one_small_deep_core_with_little_hypoperfusion(seed):
    from scipy import ndimage

    c = native_case("lacune", seed)
    t = c.truth
    assert c.kind == t["kind"] == "lacune"
    assert 0.15 <= t["core_ml"] <= 1.0
    assert t["hypoperfusion_ml"] < 5.0 and t["tmax6_ml"] < 5.0
    assert ndimage.label(c.core, np.ones((3, 3, 3)))[1] == 1  # one core
    assert t["site"] in ("basal_ganglia", "internal_capsule", "thalamus", "corona_radiata", "pons")
    centre = _mni(c, c.core).mean(axis=0)
    assert abs(centre[0]) < 32 and -40 < centre[2] < 36 and -35 < centre[1] < 12  # deep, not cortical
    x = _mni(c, c.core)[:, 0]
    assert t["side"] == ("left" if (x < 0).sum() > (x > 0).sum() else "right") == t["clinical_side"] == c.stroke.side
    assert 0 <= t["nihss"] <= 8
    _ungraded(c)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_mimic_has_no_lesion_at_all(seed):
    c = native_case("mimic", seed)
    t = c.truth
    assert t["core_ml"] == 0.0 and t["hypoperfusion_ml"] == 0.0 and t["tmax6_ml"] == 0.0
    assert not c.core.any() and not c.lesion.any() and float(c.tmax.max()) < 3.0  # every delay normal
    assert t["side"] is None and c.stroke.side is None and t["clinical_side"] in ("left", "right")
    assert c.clinical_side == t["clinical_side"]
    assert 0 <= t["nihss"] <= 20
    _ungraded(c)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_chronic_infarct_is_csf_like_dark_and_not_acute(seed):
    c = native_case("chronic", seed)
    t = c.truth
    assert t["core_ml"] < 0.1 and t["hypoperfusion_ml"] == 0.0 and not c.lesion.any()
    assert c.old_infarct is not None and 2.0 <= t["old_infarct_ml"] <= 42.0
    assert float(c.adc[c.old_infarct].mean()) > 1.3e-3
    tissue = (c.adc > 0.6e-3) & (c.adc < 1.0e-3)
    assert float(c.dwi[c.old_infarct].mean()) < 0.7 * float(np.median(c.dwi[tissue]))  # dark on b=1000
    assert t["side"] is None and t["clinical_side"] in ("left", "right") and 0 <= t["nihss"] <= 10
    _ungraded(c)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_emboli_lie_in_both_hemispheres(seed):
    c = native_case("emboli", seed)
    t = c.truth
    x = _mni(c, c.core)[:, 0]
    voxel_ml = abs(np.linalg.det(c.diffusion_affine[:3, :3])) / 1000.0
    assert (x < 0).sum() * voxel_ml > 0.1 and (x > 0).sum() * voxel_ml > 0.1
    assert t["side"] == t["clinical_side"] == c.stroke.side == "bilateral"
    assert 2 <= len(t["territories"]) <= 3
    assert 0.6 <= t["core_ml"] <= 15.0 and t["hypoperfusion_ml"] > t["core_ml"]
    _ungraded(c)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_posterior_stroke_lies_in_the_posterior_circulation(seed):
    c = native_case("posterior", seed)
    t = c.truth
    centre = _mni(c, c.lesion).mean(axis=0)
    assert centre[1] < -40 or centre[2] < -10
    assert t["site"] in ("pca", "cerebellum", "pons", "midbrain")
    assert 0.5 <= t["core_ml"] <= 32.0 and t["hypoperfusion_ml"] > t["core_ml"]
    assert t["side"] in ("left", "right") and t["side"] == t["clinical_side"] and 1 <= t["nihss"] <= 15
    _ungraded(c)


@pytest.mark.slow
def test_side_is_forced_for_kinds_with_one():
    assert generate_case(4, kind="lacune", side="right").truth["side"] == "right"
    assert generate_case(4, kind="posterior", side="left").truth["side"] == "left"
    mimic = generate_case(4, kind="mimic", side="right")
    assert mimic.truth["side"] is None and mimic.truth["clinical_side"] == "right"


def test_white_matter_lesions_shine_through_and_never_make_a_core():
    c = native_case("mimic", 3)  # seed 3 draws 14.8 mL of white-matter lesions
    wml = c.wm_lesions
    voxel_ml = abs(np.linalg.det(c.diffusion_affine[:3, :3])) / 1000.0
    assert wml is not None and wml.sum() * voxel_ml == pytest.approx(c.truth["anatomy"]["wm_lesion_ml"], abs=1e-3)
    assert c.truth["anatomy"]["wm_lesion_ml"] > 5.0
    assert not c.core.any()
    assert 0.85e-3 < float(np.median(c.adc[wml])) < 1.25e-3
    assert float(np.percentile(c.adc[wml], 1)) > 620e-6
    normal_wm = (c.adc > 0.62e-3) & (c.adc < 0.76e-3) & ~wml
    assert float(np.median(c.dwi[wml])) > float(np.median(c.dwi[normal_wm]))  # T2 shine-through


def test_anatomy_variation_widens_csf_spaces_and_keeps_tissue_fractions_whole():
    from scipy import ndimage

    from collat_ensemble.phantom.anatomy import anatomy_on_grid, mni_2mm_grid
    from collat_ensemble.phantom.diffusion import T2_S0
    from collat_ensemble.phantom.variation import draw_variation, vary_anatomy

    base = anatomy_on_grid(*mni_2mm_grid())
    drawn = draw_variation(3, T2_S0)
    assert drawn.atrophy > 0.3 and drawn.ventricle_scale > 1.4  # seed 3: an old brain
    plain, _ = vary_anatomy(base, replace(drawn, atrophy=0.0, ventricle_scale=1.0, patches=()))
    assert np.array_equal(plain.csf, base.csf) and np.array_equal(plain.gm, base.gm)
    varied, wml = vary_anatomy(base, drawn)
    inside = base.envelope
    np.testing.assert_allclose((varied.gm + varied.wm + varied.csf)[inside], (base.gm + base.wm + base.csf)[inside],
                               atol=1e-5)
    assert varied.csf.sum() > 1.3 * base.csf.sum() and varied.gm.sum() < 0.95 * base.gm.sum()

    def ventricles(anat) -> float:
        labels, _ = ndimage.label((anat.csf > 0.4) & (np.abs(anat.world[..., 0]) < 30) & (anat.world[..., 2] > -8)
                                  & (anat.world[..., 2] < 34) & (anat.world[..., 1] > -50) & (anat.world[..., 1] < 35))
        return float(np.bincount(labels.ravel())[1:].max())

    only_ventricles, _ = vary_anatomy(base, replace(drawn, atrophy=0.0, patches=()))
    assert ventricles(only_ventricles) > 1.8 * ventricles(base)  # 1.49^3 = 3.3 by volume, less at the borders
    assert not wml.any() or (base.wm[wml] > 0.3).all()


def test_draw_kind_gives_the_stated_mix_and_is_deterministic():
    from collections import Counter

    from collat_ensemble.phantom import KINDS, draw_kind

    stated = {"mca": 0.40, "lacune": 0.12, "posterior": 0.14, "mimic": 0.14, "chronic": 0.10, "emboli": 0.10}
    assert set(KINDS) == set(stated)
    counts = Counter(draw_kind(seed) for seed in range(1000))
    for kind, fraction in stated.items():
        assert abs(counts[kind] / 1000 - fraction) <= 0.04, kind
    assert [draw_kind(s) for s in range(50)] == [draw_kind(s) for s in range(50)]


def test_unknown_kind_is_named():
    with pytest.raises(InputValidationError, match="kind"):
        generate_case(1, kind="tumour")


def test_dwi_bval_holds_the_cases_b_value(tmp_path):
    c = native_case("mimic", 0)
    b = c.truth["dwi_b_value"]
    assert 900 <= b <= 1100 and b != 1000
    files = write_case(c, tmp_path)
    assert float((tmp_path / "dwi.bval").read_text()) == b
    assert json.loads(files["truth"].read_text())["dwi_b_value"] == b
    drawn = {generate_case(s, kind="mimic").truth["dwi_b_value"] for s in (5, 6)} | {b}
    assert len(drawn) == 3  # every case its own


@pytest.mark.slow
def test_cli_writes_any_kind_and_prints_it(tmp_path):
    import subprocess
    import sys

    run = [sys.executable, "-m", "collat_ensemble.phantom.cli"]
    ok = subprocess.run([*run, "--out", str(tmp_path / "m"), "--seed", "3", "--kind", "mimic"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "case 3: mimic dce grade - -," in ok.stdout
    truth = json.loads((tmp_path / "m" / "truth.json").read_text())
    assert truth["kind"] == "mimic" and truth["collateral_grade"] is None
    mixed = subprocess.run([*run, "--out", str(tmp_path / "x"), "--seed", "11", "--kind", "mixed"],
                           capture_output=True, text=True, timeout=120)
    from collat_ensemble.phantom import draw_kind

    assert mixed.returncode == 0, mixed.stderr
    assert f"case 11: {draw_kind(11)} " in mixed.stdout


def test_the_default_mix_holds_every_grade_as_often_as_the_studys_patients():
    """Version 5: any 30 consecutive seeds (an evaluation range) draw each CPS grade within 4 points of the share
    the study's 296 patients had (the issue asks for 5); 296 of them exactly the study's counts."""
    from collat_ensemble.phantom.grades import STUDY_CPS_COUNTS, target_grade

    share = np.array(STUDY_CPS_COUNTS) / sum(STUDY_CPS_COUNTS)
    windows = [(first, 30, 4.0) for first in range(0, 600, 13)] + [(1_000_000, 30, 4.0), (0, 296, 0.0)]
    for first, count, points in windows:
        drawn = np.bincount([target_grade(s) for s in range(first, first + count)], minlength=6) / count
        assert np.abs(drawn - share).max() * 100 <= points + 1e-9, (first, count, drawn)


@pytest.mark.parametrize("grade", [pytest.param(g, marks=() if g in (0, 5) else pytest.mark.slow) for g in range(6)])
def test_a_case_asked_for_a_grade_measures_that_grade(grade):
    case = generate_case(7, grade=grade, side="left")
    truth = case.truth
    assert truth["requested_grade"] == grade and truth["collateral_grade"] == grade
    fractions = truth["hypoperfused_fraction"]
    assert truth["collateral_grade"] == collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES))
    if grade == 0:  # very poor: more than half the territory dark until the late venous phase
        assert fractions["late_venous"] > 0.5 and truth["collateral_strength"] == 0 and truth["mca_profile"] > 2
    if grade == 5:  # excellent: at most a small area, in no phase more than an eighth of the territory
        assert max(fractions.values()) < 1 / 8 and truth["collateral_strength"] == 5


def test_a_grade_is_asked_of_an_mca_stroke_alone_and_not_with_a_strength():
    with pytest.raises(InputValidationError, match="give a collateral grade or a collateral strength, not both"):
        generate_case(1, grade=2, strength=2)
    with pytest.raises(InputValidationError, match="only MCA strokes are graded"):
        generate_case(1, grade=2, kind="lacune")
    with pytest.raises(InputValidationError, match="a collateral grade is 0..5, got 6"):
        generate_case(1, grade=6)

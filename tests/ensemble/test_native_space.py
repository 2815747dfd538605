"""Native-space DWI/ADC through the diffusion steps: registered to MNI, results back on the scan's own voxels.

The network is replaced by a perfect one: the phantom's true lesion carried into MNI space by the
phantom's true pose. What comes back onto the scan must then be that lesion, whatever the storage
order (LAS), the affine (oblique) or the voxel shape (0.9 x 0.9 x 5 mm), and a scan that covers too
little of the brain must keep its maps but lose its decisions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from collat_client.imaging.evaluation import dice
from collat_ensemble.geometry import resample
from collat_ensemble.phantom import generate_case, write_case
from collat_ensemble.preprocess import MNI_2MM_AFFINE, MNI_2MM_SHAPE, PADDED_INPLANE, pad_inplane, to_slabs
from collat_ensemble.registration import _inside_fov, registration_error_mm
from collat_ensemble.serving import context as ctx
from collat_ensemble.serving import diffusion

CLINICAL = {"nihss": 12, "age": 70}


@pytest.fixture(scope="module")
def native_case():
    return generate_case(5, space="native")


def perfect_network(case) -> np.ndarray:
    """Slab probabilities [S, 1, 16, 128, 128] of the true lesion in MNI space (placed by the true pose)."""
    lesion_to_mni = np.linalg.inv(case.mni_to_native) @ case.diffusion_affine
    mni = resample(case.lesion.astype(np.float32), lesion_to_mni, MNI_2MM_AFFINE, MNI_2MM_SHAPE)
    volume = np.transpose(pad_inplane(mni), (2, 1, 0))[None]
    assert volume.shape == (1, MNI_2MM_SHAPE[2]) + PADDED_INPLANE[::-1]
    return to_slabs(volume)


def served(dwi, adc, affine, probabilities):
    slabs, _, core, brain, context = diffusion.preprocess(dwi, adc, affine, affine, CLINICAL)
    prob, lesion, core_out, part, _ = diffusion.postprocess(probabilities, core, brain, ctx.decode(ctx.encode(context)))
    return lesion.astype(bool), core_out.astype(bool), part


@pytest.fixture(scope="module")
def ras_result(native_case):
    c = native_case
    return served(c.dwi, c.adc, c.diffusion_affine, perfect_network(c))


def test_the_phantom_writes_its_native_pose(native_case, tmp_path):
    c = native_case
    assert c.dwi.shape == (256, 256, 32)
    np.testing.assert_allclose(np.abs(np.diag(c.diffusion_affine))[:3], [0.9, 0.9, 5.0])
    write_case(c, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["space"] == "native"
    np.testing.assert_allclose(truth["mni_to_native"], c.mni_to_native, atol=1e-8)
    angles = np.degrees(np.arccos(np.clip(np.diag(c.mni_to_native[:3, :3]) / np.linalg.norm(
        c.mni_to_native[:3, :3], axis=0), -1, 1)))
    assert 0 < angles.max() <= 25  # a real head pose, not the identity


def test_registration_recovers_the_true_pose_within_2_mm(native_case, ras_result):
    registration = ras_result[2]["registration"]
    assert registration["method"] == "affine" and registration["similarity"] >= 0.9
    error = registration_error_mm(np.array(registration["native_to_mni"]), native_case.mni_to_native)
    assert error <= 2.0


def test_results_come_back_onto_the_scans_own_voxels(native_case, ras_result):
    lesion, core, part = ras_result
    truth_core_ml = native_case.truth["core_ml"]
    assert lesion.shape == core.shape == native_case.dwi.shape
    assert dice(lesion, native_case.lesion) >= 0.85
    assert part["core_ml"] == pytest.approx(truth_core_ml, rel=0.10)  # counted on the 0.9 x 0.9 x 5 mm voxels
    assert part["hypoperfusion_ml"] == pytest.approx(native_case.truth["hypoperfusion_ml"], rel=0.15)
    assert part["defuse3"]["eligible"] == native_case.truth["defuse3_target_mismatch"]
    assert part["quality"]["decisions_withheld"] == []


def test_a_las_copy_gives_the_same_voxels_mirrored(native_case, ras_result):
    c = native_case
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = c.dwi.shape[0] - 1
    lesion, core, part = served(c.dwi[::-1].copy(), c.adc[::-1].copy(), c.diffusion_affine @ flip,
                                perfect_network(c))
    np.testing.assert_array_equal(lesion[::-1], ras_result[0])
    np.testing.assert_array_equal(core[::-1], ras_result[1])
    assert part["input_orientation"] == "LAS" and part["core_ml"] == ras_result[2]["core_ml"]


def test_an_oblique_affine_moves_the_head_not_the_results(native_case, ras_result):
    """The same voxels declared 10 degrees oblique: the registration absorbs it, the voxels' results do not change."""
    c = native_case
    angle = np.radians(10.0)
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    centre = c.diffusion_affine @ np.r_[(np.array(c.dwi.shape) - 1) / 2.0, 1.0]
    about = np.eye(4)
    about[:3, 3] = centre[:3]
    oblique = about @ turn @ np.linalg.inv(about) @ c.diffusion_affine
    # The perfect network's output for this patient does not change: only the scan's declared geometry does.
    lesion, core, part = served(c.dwi, c.adc, oblique, perfect_network(c))
    assert dice(lesion, ras_result[0]) >= 0.95
    assert part["core_ml"] == pytest.approx(ras_result[2]["core_ml"], rel=0.02)


def test_a_scan_of_a_few_slices_keeps_its_maps_but_not_its_decisions(native_case):
    c = native_case
    keep = slice(12, 18)  # six 5 mm slices: 30 mm of brain
    affine = c.diffusion_affine.copy()
    affine[:3, 3] = c.diffusion_affine[:3, :3] @ [0, 0, keep.start] + c.diffusion_affine[:3, 3]
    lesion, core, part = served(c.dwi[:, :, keep].copy(), c.adc[:, :, keep].copy(), affine, perfect_network(c))
    assert lesion.shape == (256, 256, 6)
    coverage = next(ch for ch in part["quality"]["checks"] if ch["name"] == "template_coverage")
    assert coverage["verdict"] == "fail" and coverage["value"] < 0.5
    assert part["defuse3"] is None and part["dawn"] is None
    assert any("covers" in reason for reason in part["quality"]["decisions_withheld"])


@pytest.mark.parametrize("margin", [0.0, 1.0, 3.0])
def test_field_of_view_test_matches_mapping_every_voxel(margin: float) -> None:
    """Which MNI grid voxels an oblique, scaled scan covers: the same as mapping each voxel centre into the scan's
    index space and checking it against the scan's extent less the margin."""
    rng = np.random.default_rng(int(margin * 10))
    image_to_mni = np.eye(4)
    image_to_mni[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0] @ np.diag([0.9, 1.1, 5.0])
    image_to_mni[:3, 3] = [-60.0, -80.0, -40.0]
    shape, grid_shape = (120, 110, 24), (40, 45, 38)
    got = _inside_fov(shape, image_to_mni, MNI_2MM_AFFINE, grid_shape, margin=margin)
    voxels = np.argwhere(np.ones(grid_shape, bool)).astype(np.float64)
    world = voxels @ MNI_2MM_AFFINE[:3, :3].T + MNI_2MM_AFFINE[:3, 3]
    native = (world - image_to_mni[:3, 3]) @ np.linalg.inv(image_to_mni[:3, :3]).T
    extent = np.array(shape, np.float64)
    inset = np.minimum(margin, (extent - 1.0) / 4.0)
    expected = np.all((native >= inset - 0.5) & (native <= extent - 0.5 - inset), axis=1).reshape(grid_shape)
    assert 0 < expected.sum() < expected.size  # the pose cuts through the grid: the test has both kinds of voxel
    assert (got != expected).sum() <= 2  # only a voxel centre within rounding of the scan's edge may differ

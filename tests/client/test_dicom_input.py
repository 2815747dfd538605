"""DICOM in, on series written here (classic, enhanced, compressed; oblique and flipped): exact geometry, the
diffusion trace and ADC, b-value rules, the study's choice and its refusals, and no identifiers carried along."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_writer import write_classic, write_enhanced, write_mosaic, write_report

from collat_client.dicom import read_study
from collat_client.dicom.convert import convert_folder
from collat_client.errors import InputFileError, InvalidInput
from collat_client.sdk.inputs import read_diffusion, read_perfusion


def oblique_affine(angle: float = 0.3, flip_x: bool = False) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    a = np.eye(4)
    a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-1.2 if flip_x else 1.2, 0.9, 5.0])
    a[:3, 3] = [-50.0, 20.0, -30.0]
    return a


def in_written_order(data: np.ndarray, affine: np.ndarray, written_affine: np.ndarray,
                     shape: tuple[int, int, int]) -> np.ndarray:
    """The converted voxels re-indexed as they were written (through both affines: the converter reorients)."""
    ijk = np.indices(shape).reshape(3, -1)
    theirs = np.linalg.inv(affine) @ written_affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    index = np.rint(theirs[:3]).astype(int)
    assert np.abs(theirs[:3] - index).max() < 1e-3
    return data[tuple(index)].reshape(shape + data.shape[3:])


@pytest.mark.parametrize("writer, syntax, flip_x", [
    (write_classic, None, False), (write_enhanced, None, False), (write_classic, "rle", False),
    (write_enhanced, "rle", False), (write_classic, None, True), (write_enhanced, None, True),
    (write_classic, "rle", True), (write_mosaic, None, False), (write_mosaic, None, True)])
def test_every_voxel_lands_where_the_dicom_positions_put_it(tmp_path, writer, syntax, flip_x):
    data = np.random.default_rng(0).integers(0, 4000, (12, 10, 6)).astype(float)
    affine = oblique_affine(flip_x=flip_x)
    folder = writer(tmp_path / "s", data, affine, **({"syntax": syntax} if syntax else {}))
    image = convert_folder(folder)[0]
    # Every voxel's world position (from the DICOM geometry) must find, through the converted affine, a voxel of
    # the converted image holding the same value.
    ijk = np.indices(data.shape).reshape(3, -1)
    world = affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    theirs = np.linalg.inv(image.affine) @ world
    index = np.rint(theirs[:3]).astype(int)
    assert np.abs(theirs[:3] - index).max() < 1e-3
    np.testing.assert_array_equal(image.data[tuple(index)], data[tuple(ijk)])


def test_a_converter_that_reorders_slices_without_their_pixels_is_caught_and_put_right(tmp_path):
    """dcm2niix 1.0.20260724 reverses the slices (not the affine) of an RLE Enhanced MR file whose slice normal runs
    against its stacking order; the spot check sees it, and the voxels the SDK hands on are the ones written."""
    data = np.random.default_rng(0).integers(0, 4000, (12, 10, 6)).astype(float)
    folder = write_enhanced(tmp_path / "s", data, oblique_affine(flip_x=True), syntax="rle", description="T1")
    entry = read_study(folder).entries[0]
    dwi = read_diffusion(folder)  # given as the DWI: the 3D image is taken whatever its headers say
    np.testing.assert_array_equal(in_written_order(dwi.data, dwi.affine, oblique_affine(flip_x=True), data.shape),
                                  data)
    converted = convert_folder(folder)[0]
    if not np.array_equal(converted.data, dwi.data):  # the converter still has the defect: the check said so
        assert "slices put back in the order of their DICOM positions" in entry.reason


def test_a_multi_b_series_gives_the_geometric_mean_trace_and_the_adc(tmp_path):
    rng = np.random.default_rng(1)
    s0 = rng.uniform(500, 1500, (8, 8, 5))
    adc = rng.uniform(0.4e-3, 1.2e-3, (8, 8, 5))
    directional = [np.exp(-1000 * adc * f) for f in (0.8, 1.0, 1.25)]
    volumes = np.stack([s0] + [s0 * d for d in directional], axis=-1)
    write_classic(tmp_path / "dwi", volumes, np.diag([2.0, 2.0, 5.0, 1.0]), b_values=[0, 1000, 1000, 1000],
                  slope=0.05, description="ep2d_diff")
    study = read_study(tmp_path / "dwi")
    assert study.dwi.b_value == 1000 and study.adc.label.startswith("ADC computed from series 1")
    dwi = in_written_order(study.dwi.data, study.dwi.affine, np.diag([2.0, 2.0, 5.0, 1.0]), (8, 8, 5))
    computed = in_written_order(study.adc.data, study.adc.affine, np.diag([2.0, 2.0, 5.0, 1.0]), (8, 8, 5))
    stored = np.rint(volumes / 0.05) * 0.05
    trace = np.exp(np.log(stored[..., 1:]).mean(-1))
    np.testing.assert_allclose(dwi, trace, rtol=1e-4)
    np.testing.assert_allclose(computed, -np.log(trace / stored[..., 0]) / 1000, atol=2e-6)
    np.testing.assert_allclose(computed, adc, atol=3e-5)  # the true ADC, up to the stored integers


def test_a_b_value_other_than_1000_is_refused_unless_allowed(tmp_path):
    volumes = np.stack([np.full((6, 6, 4), 1000.0), np.full((6, 6, 4), 200.0)], axis=-1)
    folder = write_enhanced(tmp_path / "dwi", volumes, np.diag([2.0, 2.0, 5.0, 1.0]), b_values=[0, 2500],
                            image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"), description="dwi b2500")
    with pytest.raises(InvalidInput, match=r"series 1 'dwi b2500': the DWI's highest b-value is 2500 s/mm\^2, not "
                                           r"800-1200 .* --allow-b-value"):
        read_diffusion(folder)
    dwi = read_diffusion(folder, allow_b_value=True)
    assert dwi.b_value == 2500 and dwi.shape == (6, 6, 4)


def write_study(root, *, second_perfusion: bool = False):
    """Perfusion (4D, a bolus), a multi-b DWI, the scanner's ADC, a T1 and a report, in nested folders."""
    rng = np.random.default_rng(2)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    t = np.arange(24)
    series = 500 + 300 * np.exp(-0.5 * ((t - 10) / 2.0) ** 2)[None, None, None] * np.ones((10, 10, 6, 1))
    write_classic(root / "a" / "perf", series + rng.integers(0, 5, series.shape), affine, number=3,
                  description="DCE perfusion", frame_seconds=1.5)
    if second_perfusion:
        write_classic(root / "a" / "perf2", series, affine, number=4, description="perfusion repeat",
                      frame_seconds=1.5)
    dwi = np.stack([np.full((10, 10, 6), 900.0), np.full((10, 10, 6), 400.0), np.full((10, 10, 6), 380.0)], -1)
    write_classic(root / "b" / "c" / "dwi", dwi, affine, number=5, description="DWI", b_values=[0, 1000, 1000])
    write_classic(root / "b" / "adc", np.full((10, 10, 6), 800.0), affine, number=6, description="DWI_ADC",
                  image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"))
    write_enhanced(root / "t1", np.full((12, 12, 8), 300.0), np.diag([1.0, 1.0, 1.0, 1.0]), number=2,
                   description="T1 MPRAGE")
    write_report(root / "sr")
    return root


def test_a_study_folder_is_sorted_into_perfusion_dwi_adc_and_the_rest(tmp_path):
    study = read_study(write_study(tmp_path / "study"))
    rows = {row["series"]: row for row in study.table()}
    assert rows["series 3 'DCE perfusion'"]["outcome"] == "chosen as perfusion"
    assert rows["series 5 'DWI'"]["outcome"] == "chosen as DWI" and study.dwi.b_value == 1000
    assert rows["series 6 'DWI_ADC'"]["outcome"] == "chosen as ADC"
    assert rows["series 2 'T1 MPRAGE'"]["role"] == "other" and rows["series 2 'T1 MPRAGE'"]["outcome"] == "left out"
    assert rows["series 900 'report'"] == {"series": "series 900 'report'", "number": 900, "shape": "-",
                                           "role": "not an image", "outcome": "ignored",
                                           "reason": "1 Basic Text SR Storage object(s)"}
    assert study.perfusion.frame_seconds == pytest.approx(1.5) and study.perfusion.data.shape == (10, 10, 6, 24)
    np.testing.assert_allclose(study.adc.data, 800.0)
    np.testing.assert_allclose(study.dwi.data, np.sqrt(400.0 * 380.0), rtol=1e-5)


def test_an_ambiguous_study_lists_the_candidates_and_a_flag_settles_it(tmp_path):
    root = write_study(tmp_path / "study", second_perfusion=True)
    with pytest.raises(InvalidInput, match=r"2 perfusion candidates, choose one with --perfusion-series: "
                                           r"series 3 'DCE perfusion' 10x10x6x24 uid .*; series 4 "):
        read_study(root)
    assert read_study(root, perfusion_series="4").perfusion.label == "series 4 'perfusion repeat'"
    with pytest.raises(InvalidInput, match="no perfusion series 7 .candidates: series 3"):
        read_study(root, perfusion_series="7")


def test_no_identifier_leaves_the_reader(tmp_path):
    study = read_study(write_study(tmp_path / "study"))
    text = repr(study.table()) + repr([e for e in study.entries])
    assert "Phantom" not in text and "PHANTOM-0001" not in text


def test_a_missing_slice_is_named_not_converted_into_a_wrong_volume(tmp_path):
    data = np.ones((6, 6, 6, 1)) * 100.0
    folder = write_classic(tmp_path / "gap", data, np.diag([2.0, 2.0, 5.0, 1.0]), description="dwi")
    (folder / "IM00003").unlink()
    with pytest.raises(InvalidInput, match=r"gap: no usable dwi series \(series 1 'dwi': slice positions are not "
                                           r"evenly spaced: 10.00 mm after slice 2 of 5 .*a missing slice"):
        read_diffusion(folder)


def test_folders_without_dicom_and_series_that_are_not_perfusion_are_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="empty: no DICOM files in this folder or below it"):
        read_perfusion(tmp_path / "empty")
    short = write_classic(tmp_path / "short", np.ones((8, 8, 6, 5)) * np.arange(5), np.diag([3.0, 3.0, 6.0, 1]),
                          description="bolus test")
    with pytest.raises(InvalidInput, match=r"short: no usable perfusion series \(series 1 'bolus test': time series "
                                           r"of 5 frames; 5 frames: too few for perfusion \(at least 20\)\)"):
        read_perfusion(short)


def test_a_nifti_with_its_bval_gives_its_b_value_trace_and_adc(tmp_path):
    """BIDS and dcm2niix write a .bval beside the NIfTI: the SDK reads it as it reads the DICOM header."""
    import nibabel as nib

    from collat_client.sdk.plan import plan_request

    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    volumes = np.stack([np.full((6, 6, 4), 1000.0), np.full((6, 6, 4), 450.0), np.full((6, 6, 4), 400.0)], -1)
    nib.save(nib.Nifti1Image(volumes.astype(np.float32), affine), str(tmp_path / "dwi.nii.gz"))
    (tmp_path / "dwi.bval").write_text("0 1000 1000\n")
    plan = plan_request(dwi=tmp_path / "dwi.nii.gz", clinical={"nihss": 4})
    pipeline, tensors, found = plan.pipeline, plan.tensors, plan.volumes
    assert pipeline == "hypoperfusion_pipeline" and found["dwi"].b_value == 1000
    np.testing.assert_allclose(found["dwi"].data, np.sqrt(450.0 * 400.0), rtol=1e-5)
    np.testing.assert_allclose(found["adc"].data, -np.log(np.sqrt(450.0 * 400.0) / 1000.0) / 1000, rtol=1e-5)
    assert b'"dwi_b_value": 1000.0' in tensors["CLINICAL"][0] or b'"dwi_b_value":1000.0' in tensors["CLINICAL"][0]
    (tmp_path / "dwi.bval").write_text("0 2000 2000\n")
    with pytest.raises(InvalidInput, match=r"dwi.nii.gz: the DWI's highest b-value is 2000 s/mm\^2"):
        read_diffusion(tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bval").write_text("0 1000\n")
    with pytest.raises(InputFileError, match=r"dwi.nii.gz: its .bval lists 2 b-values for 3 volume\(s\)"):
        read_diffusion(tmp_path / "dwi.nii.gz")


def test_a_seg_needs_dicom_frames_to_reference(tmp_path):
    from collat_client.dicom.seg import build_segmentation

    mask = np.zeros((6, 6, 4), bool)
    options = {"algorithm": "a", "version": "1", "checksum": None, "research_only": True}
    with pytest.raises(InvalidInput, match="needs a DWI read from DICOM"):
        build_segmentation(mask, mask, np.eye(4), (), **options)
    mosaic = write_mosaic(tmp_path / "mosaic", np.ones((6, 6, 4)), np.diag([2.0, 2.0, 5.0, 1.0]))
    with pytest.raises(InvalidInput, match="no SEG for a Siemens mosaic DWI"):
        build_segmentation(mask, mask, np.eye(4), tuple(mosaic.iterdir()), **options)

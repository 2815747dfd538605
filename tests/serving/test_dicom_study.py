"""A phantom written as scanner DICOM (a whole study: classic, enhanced, compressed; with a T1 and a report beside
it) goes through the real server to the same metrics as its NIfTI files, with no series named by the user."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from dicom_writer import ADC_TYPE, TRACE, write_classic, write_enhanced, write_phantom_study

from collat_client.apps.cli import main as cli
from collat_client.dicom.seg import _frames, masks_on_frames
from collat_client.imaging.volumes import Volume
from collat_client.schema import Clinical
from collat_client.sdk.client import CollatClient
from collat_ensemble.phantom import generate_case


@pytest.fixture(scope="module")
def native_case():
    return generate_case(3, space="native", side="left")


@pytest.fixture(scope="module")
def nifti_metrics(server, native_case):
    c = native_case
    with CollatClient(server.http_url) as client:
        return client.infer(perfusion=Volume(c.perfusion, c.perfusion_affine, c.frame_seconds),
                            dwi=Volume(c.dwi, c.diffusion_affine), adc=Volume(c.adc, c.diffusion_affine),
                            clinical=Clinical(nihss=c.nihss, age=c.age, side="left", dwi_b_value=1000)).metrics


@pytest.mark.parametrize("diffusion_writer, syntax", [(write_enhanced, None), (write_classic, "rle"),
                                                     (write_enhanced, "rle"), ("mosaic", None)],
                         ids=["enhanced", "classic-rle", "enhanced-rle", "mosaic"])
def test_a_dicom_study_gives_the_metrics_of_its_nifti(server, native_case, nifti_metrics, tmp_path,
                                                     diffusion_writer, syntax):
    study = write_phantom_study(tmp_path / "study", native_case, diffusion_writer=diffusion_writer, syntax=syntax)
    mosaic = diffusion_writer == "mosaic"  # no SEG on mosaic frames (see collat_client.dicom.seg)
    pacs = [] if mosaic else ["--dicom-out", str(tmp_path / "pacs")]
    result = CliRunner().invoke(cli, ["infer", str(study), "--nihss", str(native_case.nihss), "--age",
                                      str(native_case.age), "--side", "left", "--json", "--out",
                                      str(tmp_path / "out"), *pacs, "--url", server.http_url])
    assert result.exit_code == 0, result.output
    got, want = json.loads(result.stdout), nifti_metrics
    h, w = got["hypoperfusion"], want.hypoperfusion
    assert h["clinical"]["dwi_b_value"] == 1000.0  # read from the header, checked by the gate
    assert h["adc_units_assumed"] == "1e-6 mm2/s" and w.adc_units_assumed == "mm2/s"
    for key in ("core_ml", "hypoperfusion_ml"):
        assert h[key] == pytest.approx(getattr(w, key), rel=0.01, abs=0.1), key
    assert (h["defuse3"] or {}).get("eligible") == (w.defuse3.eligible if w.defuse3 else None)
    c, wc = got["collateral"], want.collateral
    assert c["contrast"]["kind"] == wc.contrast.kind and c["cps_estimate"] == wc.cps_estimate
    for phase, value in wc.hypoperfused_fraction.items():
        assert c["hypoperfused_fraction"][phase] == pytest.approx(value, abs=0.01)
    assert (tmp_path / "out" / "collateral_maps.nii.gz").exists()
    if not mosaic:
        assert_seg_is_the_nifti_masks(tmp_path / "pacs" / "lesion_core_seg.dcm", tmp_path / "out",
                                      study / "dwi" / "trace")


def assert_seg_is_the_nifti_masks(seg_path, nifti_dir, dwi_folder):
    """The SEG read back with highdicom holds, on every DWI frame, exactly the NIfTI lesion and core."""
    seg = hd.seg.segread(str(seg_path))
    assert seg.PatientID == "PHANTOM-0001" and seg.number_of_segments == 2  # the source's identity, kept
    lesion, core = (nib.load(str(nifti_dir / f"{n}.nii.gz")) for n in ("lesion_mask", "core_mask"))
    sources, frames = _frames(tuple(sorted(p for p in dwi_folder.rglob("*") if p.is_file())))
    expected = masks_on_frames([np.asarray(lesion.dataobj, bool), np.asarray(core.dataobj, bool)], lesion.affine,
                               frames)
    if len(sources) == 1:
        got = seg.get_pixels_by_source_frame(source_sop_instance_uid=sources[0].SOPInstanceUID,
                                             source_frame_numbers=list(range(1, len(frames) + 1)),
                                             segment_numbers=[1, 2])
    else:
        got = seg.get_pixels_by_source_instance(source_sop_instance_uids=[d.SOPInstanceUID for d in sources],
                                                segment_numbers=[1, 2])
    np.testing.assert_array_equal(got.astype(bool), expected.astype(bool))
    assert expected[..., 0].sum() == np.asarray(lesion.dataobj).astype(bool).sum() > 0  # every lesion voxel is in it


def test_a_b2500_dwi_is_refused_and_when_allowed_its_decisions_are_withheld(server, native_case, tmp_path):
    case = native_case
    write_classic(tmp_path / "study" / "dwi", case.dwi[..., None].astype(float), case.diffusion_affine, number=7,
                  description="ep2d_diff_b2500_TRACEW", image_type=TRACE, b_values=[2500.0],
                  slope=float(case.dwi.max()) / 60000.0)
    write_classic(tmp_path / "study" / "adc", case.adc * 1e6, case.diffusion_affine, number=8,
                  description="ep2d_diff_ADC", image_type=ADC_TYPE)
    args = ["infer", str(tmp_path / "study"), "--nihss", "10", "--age", "70", "--side", "left", "--json",
            "--out", str(tmp_path / "out"), "--url", server.http_url]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "b-value is 2500 s/mm^2" in refused.stderr
    assert not (tmp_path / "out").exists()
    allowed = CliRunner().invoke(cli, [*args, "--allow-b-value"])
    assert allowed.exit_code == 0, allowed.output
    metrics = json.loads(allowed.stdout)
    gate = next(c for c in metrics["quality"]["checks"] if c["name"] == "b_value")
    assert gate["value"] == 2500.0 and gate["verdict"] == "fail"
    assert metrics["hypoperfusion"]["defuse3"] is None and metrics["hypoperfusion"]["dawn"] is None
    assert any("b-value is 2500" in reason for reason in metrics["quality"]["decisions_withheld"])


def test_a_study_whose_time_series_has_no_bolus_says_how_to_run_its_diffusion_alone(server, native_case, tmp_path):
    """A BOLD-like 4D series (the XA30 study has one) is taken as the study's perfusion and refused by the
    server; the error names the series and the way out, and ``--perfusion-series none`` runs the DWI and ADC."""
    case = native_case
    rng = np.random.default_rng(0)
    still = case.perfusion[..., :1].astype(float) * (1.0 + 0.005 * rng.standard_normal((1, 1, 1, 30)))
    write_classic(tmp_path / "study" / "bold", still, case.perfusion_affine, number=5, description="func_bold",
                  frame_seconds=1.0, slope=float(still.max()) / 60000.0)
    write_classic(tmp_path / "study" / "dwi", case.dwi[..., None].astype(float), case.diffusion_affine, number=7,
                  description="ep2d_diff_TRACEW", image_type=TRACE, b_values=[1000.0],
                  slope=float(case.dwi.max()) / 60000.0)
    write_classic(tmp_path / "study" / "adc", case.adc * 1e6, case.diffusion_affine, number=8,
                  description="ep2d_diff_ADC", image_type=ADC_TYPE)
    args = ["infer", str(tmp_path / "study"), "--nihss", str(case.nihss), "--age", str(case.age), "--side", "left",
            "--json", "--out", str(tmp_path / "out"), "--url", server.http_url]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "no contrast bolus" in refused.stderr
    assert "series 5 'func_bold' was taken as its perfusion series: --perfusion-series none" in refused.stderr
    assert "Traceback" not in refused.output and not (tmp_path / "out").exists()
    alone = CliRunner().invoke(cli, [*args, "--perfusion-series", "none"])
    assert alone.exit_code == 0, alone.output
    metrics = json.loads(alone.stdout)
    assert metrics["collateral"] is None and metrics["hypoperfusion"]["core_ml"] > 0
    assert not (tmp_path / "out" / "collateral_maps.nii.gz").exists()

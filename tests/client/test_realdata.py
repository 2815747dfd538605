"""Every series of the real scanner corpus in ``../shared/realdata`` (its README's table), read or refused as the
table says. The data stay where they are (licences beside them); without the folder these tests are skipped with
that reason."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from realdata import AVAILABLE, MISSING, REALDATA

from collat_client.apps.cli import main as cli
from collat_client.dicom import read_study
from collat_client.errors import InvalidInput
from collat_client.sdk.inputs import read_diffusion, read_perfusion
from collat_ensemble.errors import InputValidationError
from collat_ensemble.preprocess import detect_adc_scale, prepare_perfusion

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)
XA30 = REALDATA / "siemens_xa30_enhanced"


@pytest.mark.slow
def test_the_xa30_multi_direction_dwi_builds_a_trace_and_an_adc_and_its_b2500_is_refused():
    with pytest.raises(InvalidInput, match=r"series 10 'DWI_dir80_PA': the DWI's highest b-value is 2500 s/mm\^2"):
        read_study(XA30 / "10_DWI_dir80_PA")
    study = read_study(XA30 / "10_DWI_dir80_PA", allow_b_value=True)
    assert study.dwi.b_value == 2500 and study.dwi.data.shape == (72, 72, 39)
    assert "trace computed: geometric mean of 20 directions at b=2500" in study.entries[0].reason
    assert "its b=0 and b=2500 volumes gave the ADC" in study.entries[0].reason
    scanner = read_study(XA30, allow_b_value=True)
    assert scanner.adc.label == "series 11 'DWI_dir80_PA_ADC'"
    assert scanner.dwi.label == "series 12 'DWI_dir80_PA_TRACEW'"
    # The ADC computed from b=0 and b=2500 agrees with the scanner's (1e-6 mm^2/s) inside the head.
    tissue = scanner.dwi.data > np.percentile(scanner.dwi.data, 60)
    ratio = np.median(study.adc.data[tissue] / np.maximum(scanner.adc.data[tissue] * 1e-6, 1e-9))
    assert 0.9 < ratio < 1.1


def test_the_xa30_scanner_adc_is_read_as_adc_in_1e6_units():
    adc = read_diffusion(XA30 / "11_DWI_dir80_PA", role="adc")
    tissue = adc.data > 100
    assert adc.shape == (72, 72, 39) and 600 < np.median(adc.data[tissue]) < 900
    scale, units = detect_adc_scale(adc.data, tissue)
    assert (scale, units) == (1e-6, "1e-6 mm2/s")


def test_the_xa30_trace_is_a_single_b_dwi_with_its_b_value_from_the_header():
    entry = read_study(XA30 / "12_DWI_dir80_PA", allow_b_value=True).entries[0]
    assert entry.role == "dwi" and "b-values 2500" in entry.reason and entry.shape == (72, 72, 39)


def test_the_xa30_bold_series_is_assembled_and_refused_as_perfusion_for_having_no_bolus():
    series = read_perfusion(XA30 / "7_func-bold_task-fa_run-1")
    assert series.shape == (64, 64, 33, 20) and series.frame_seconds == pytest.approx(1.0)
    with pytest.raises(InputValidationError, match="not a perfusion series: no contrast bolus: the brain's mean "
                                                   r"signal changes by at most \d\.\d%"):
        prepare_perfusion(series.data, series.affine, series.frame_seconds, frames=20, frame_interval=1.6,
                          slices=20, height=64, width=64)


@pytest.mark.slow
def test_the_xa30_study_sorts_t1_and_report_out():
    rows = {r["series"]: r for r in read_study(XA30, allow_b_value=True).table()}
    assert rows["series 5 'anat-T1w_acq-tfl'"]["role"] == "other"
    assert rows["series 99 'PhoenixZIPReport'"]["outcome"] == "ignored"
    assert "Enhanced SR Storage" in rows["series 99 'PhoenixZIPReport'"]["reason"]


@pytest.mark.slow
def test_perfusion_series_none_leaves_the_bold_series_out_and_keeps_the_diffusion_series():
    """The study's BOLD run looks like a DSC series to the folder reader (the server refuses it: no bolus), so
    the user can run the study's diffusion series alone."""
    assert read_study(XA30, allow_b_value=True).perfusion.label == "series 7 'func-bold_task-fa_run-1'"
    study = read_study(XA30, allow_b_value=True, perfusion_series="none")
    rows = {r["series"]: r for r in study.table()}
    assert study.perfusion is None and study.dwi.label == "series 12 'DWI_dir80_PA_TRACEW'"
    assert rows["series 7 'func-bold_task-fa_run-1'"]["outcome"] == "left out"
    assert rows["series 7 'func-bold_task-fa_run-1'"]["reason"].endswith("--perfusion-series none: not run")


def test_the_philips_scrambled_multi_b_folder_gives_a_b1000_trace_and_adc():
    study = read_study(REALDATA / "philips_classic_dwi")
    assert study.dwi.b_value == 1000 and study.dwi.data.shape == (112, 112, 32)
    assert "geometric mean of 12 directions at b=1000" in study.entries[0].reason
    tissue = study.dwi.data > np.percentile(study.dwi.data, 70)
    assert 0.5e-3 < np.median(study.adc.data[tissue]) < 1.2e-3  # brain tissue, mm^2/s
    ignored = [e for e in study.entries if e.outcome == "ignored"]
    assert len(ignored) == 2 and any("Presentation State" in e.reason for e in ignored)


@pytest.mark.parametrize("folder, shape, frames", [
    ("siemens_mosaic_epi", "72x72x5x2", 2), ("ge_classic_epi", "64x64x15x10", 10)])
def test_short_epi_series_are_unpacked_and_refused_as_perfusion(folder, shape, frames):
    with pytest.raises(InvalidInput, match=rf"no usable perfusion series \(series \d+ .*{frames} frames: too few"):
        read_perfusion(REALDATA / folder)
    assert all(e.shape == tuple(map(int, shape.split("x"))) for e in read_study(REALDATA / folder).entries
               if e.role == "perfusion")


@pytest.mark.parametrize("folder, extra, code, words", [
    ("siemens_xa30_enhanced", ["--nihss", "5"], 2, "b-value is 2500"),
    ("siemens_xa30_enhanced/10_DWI_dir80_PA", ["--nihss", "5"], 2, "b-value is 2500"),
    ("siemens_xa30_enhanced/11_DWI_dir80_PA", [], 2, "is an ADC with no DWI"),
    ("siemens_xa30_enhanced/5_anat-T1w_acq-tfl", [], 2, "nothing to analyse"),
    ("siemens_xa30_enhanced/99_Phoenix_Document", [], 2, "nothing to analyse"),
    ("siemens_mosaic_epi", [], 2, "nothing to analyse"),
    ("ge_classic_epi", [], 2, "nothing to analyse"),
    ("philips_classic_dwi", [], 2, "needs clinical data"),
    ("philips_classic_dwi", ["--nihss", "5"], 3, ""),  # read, then no server to send it to
])
def test_the_cli_reads_or_refuses_every_folder_in_one_line(tmp_path, folder, extra, code, words):
    result = CliRunner().invoke(cli, ["infer", str(REALDATA / folder), "--json", "--out", str(tmp_path / "o"),
                                      "--url", "127.0.0.1:9", "--retries", "0", *extra])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1 and words in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_seg_on_the_philips_dwi_references_one_instance_per_slice(tmp_path):
    """The Philips series holds an object with no position beside its 544 images: the SEG skips it."""
    import highdicom as hd

    from collat_client.dicom.seg import build_segmentation

    dwi = read_diffusion(REALDATA / "philips_classic_dwi")
    lesion = np.zeros(dwi.shape, bool)
    lesion[50:60, 50:60, 10:12] = True
    built, _ = build_segmentation(lesion, np.zeros(dwi.shape, bool), dwi.affine, dwi.dicom_files, algorithm="test",
                               version="1", checksum=None, research_only=True)
    built.save_as(str(tmp_path / "seg.dcm"))
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == dwi.shape[2] == 32
    assert int(seg.pixel_array.sum()) == lesion.sum()  # every lesion voxel on some frame, no other

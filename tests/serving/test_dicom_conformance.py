"""Every DICOM object the product writes passes the standard's validator, dicom3tools' dciodvfy, with no errors:
the SEG, the TID 1500 SR (a reported lesion and a withheld one), each phase's colour secondary captures, the summary
page and the "no result" page; and dcmtk's dsr2html renders the SR. Warnings are allowed (the local coding scheme
99COLLAT, declared in the SR, is one; values copied from the source study are others)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from dicom_writer import write_classic, write_phantom_study
from realdata import AVAILABLE, REALDATA

from collat_client.apps.cli import main as cli
from collat_client.dicom.capture import failure_capture
from collat_ensemble.phantom import generate_case

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                reason="dciodvfy not installed (Debian package dicom3tools; make pacs-peers)")


def _errors(path: Path) -> list[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def _infer(server, study: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(cli, ["infer", str(study), "--url", server.http_url, "--out", str(out / "maps"),
                                      "--dicom-out", str(out / "dicom"), *extra])
    assert result.exit_code == 0, result.output
    return out / "dicom"


@pytest.fixture(scope="module")
def written(server, tmp_path_factory) -> Path:
    """The results of a phantom stroke study (perfusion and diffusion) as the product writes them for PACS."""
    folder = tmp_path_factory.mktemp("conformance")
    case = generate_case(101, strength=1, side="left")
    study = write_phantom_study(folder / "study", case, diffusion_writer=write_classic, syntax=None)
    dicom = _infer(server, study, folder, "--nihss", str(case.nihss), "--age", "70", "--side", "left")
    reference = pydicom.dcmread(next((study / "dwi" / "trace").iterdir()))
    failure_capture("no perfusion or diffusion series found", reference).save_as(dicom / "no_result_sc.dcm")
    return dicom


@pytest.mark.parametrize("name", ["lesion_core_seg.dcm", "measurement_report_sr.dcm", "summary_sc.dcm",
                                  "no_result_sc.dcm", *(f"collateral_{p}/slice_001.dcm" for p in
                                                        ("arterial", "capillary", "early_venous", "late_venous",
                                                         "delay"))])
def test_every_object_passes_dciodvfy(written, name):
    assert (written / name).is_file(), sorted(p.name for p in written.iterdir())
    assert _errors(written / name) == []


def test_the_sr_renders_in_dsr2html(written, tmp_path):
    if shutil.which("dsr2html") is None:
        pytest.skip("dsr2html not installed (Debian package dcmtk; make pacs-peers)")
    done = subprocess.run(["dsr2html", str(written / "measurement_report_sr.dcm"), str(tmp_path / "sr.html")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "sr.html").read_text(errors="replace")
    assert "Imaging Measurement Report" in page and "ADC core" in page and "Predicted hypoperfusion lesion" in page


@pytest.mark.skipif(not AVAILABLE, reason=f"the real scanner corpus is not at {REALDATA}")
def test_a_real_scans_results_with_a_withheld_lesion_pass_dciodvfy(server, tmp_path):
    """A healthy volunteer's Philips DWI: the SR codes the lesion as withheld, the SEG holds the core alone."""
    dicom = _infer(server, REALDATA / "philips_classic_dwi", tmp_path, "--nihss", "10", "--age", "70",
                   "--side", "left")
    for name in ("lesion_core_seg.dcm", "measurement_report_sr.dcm", "summary_sc.dcm"):
        assert _errors(dicom / name) == [], name

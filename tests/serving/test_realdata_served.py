"""Real scans with no stroke through the real server: never a lesion, never a finding drawn from one.

The DWIs of ``../shared/realdata`` are healthy volunteers. Whatever the U-Net makes of them, the
result is a hypoperfusion under 10 mL or a withheld one (with the reason: outside what the network
was trained on, not a misread scan); a withheld lesion stays in ``lesion_mask.nii.gz`` for inspection
and appears in no overview, capture, SEG or SR as a finding. With no side given and no core to infer
one from, the U-Net is not run, and the result says which input would run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image
from realdata import AVAILABLE, MISSING, REALDATA

from collat_client.apps.cli import main as cli
from collat_client.dicom.results import REPORT_FILE, SEG_FILE, SUMMARY_FILE

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)
HEALTHY_DWIS = [("philips_classic_dwi", []),  # b=1000; the XA30 study: b=2500, run on request, its BOLD series left out
                ("siemens_xa30_enhanced", ["--allow-b-value", "--perfusion-series", "none"])]


def _infer(server, folder: str, extra: list[str], out: Path):
    args = ["infer", str(REALDATA / folder), "--nihss", "10", "--age", "70", "--url", server.http_url,
            "--out", str(out), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "metrics.json").read_text())


def _amber_pixels(png: Path) -> int:
    """Pixels of the overview's hypoperfusion colour (amber blended over grey): none when no lesion is shown."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((rgb[..., 0] - rgb[..., 2] > 90) & (rgb[..., 1] - rgb[..., 2] > 60)).sum())


@pytest.mark.parametrize("folder, extra", HEALTHY_DWIS, ids=[f for f, _ in HEALTHY_DWIS])
def test_a_healthy_real_dwi_told_a_side_gets_no_lesion(server, tmp_path, folder, extra):
    result, metrics = _infer(server, folder, ["--side", "left", *extra], tmp_path / "out")
    h, checks = metrics["hypoperfusion"], {c["name"]: c for c in metrics["quality"]["checks"]}
    if checks["b_value"]["verdict"] == "fail":  # b=2500: its ADC runs low, the core with it; nothing read off it
        assert h["lesion_withheld"] is not None and h["defuse3"] is None and h["dawn"] is None
    else:
        assert h["core_ml"] < 0.5
    if h["lesion_withheld"] is None:
        assert h["hypoperfusion_ml"] < 10.0
    else:  # said, with its real cause, and never drawn
        assert h["hypoperfusion_ml"] is None and h["defuse3"] is None
        assert all("outside what the network was trained on" in r and "misread" not in r
                   for r in h["lesion_withheld"]["reasons"])
        assert "WITHHELD" in result.stdout
        assert _amber_pixels(tmp_path / "out" / "overview.png") == 0


def test_a_withheld_lesion_is_no_finding_in_any_dicom_object(server, tmp_path):
    """The Philips DWI with the v3-era weights' 183 mL: SEG, SR and summary capture say withheld, show nothing."""
    _, metrics = _infer(server, "philips_classic_dwi", ["--side", "left", "--dicom-out", str(tmp_path / "dicom")],
                        tmp_path / "out")
    h = metrics["hypoperfusion"]
    if h["lesion_withheld"] is None:
        pytest.skip(f"the served U-Net drew {h['hypoperfusion_ml']} mL here: nothing withheld to show")
    seg = hd.seg.segread(str(tmp_path / "dicom" / SEG_FILE))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ADC core (ADC < 620e-6 mm2/s)"]
    assert "withheld" in seg.SeriesDescription
    sr = hd.sr.srread(str(tmp_path / "dicom" / REPORT_FILE))
    assert not sr.content.get_volumetric_roi_measurement_groups() or all(
        g.finding_type.meaning != "Predicted hypoperfusion lesion"
        for g in sr.content.get_volumetric_roi_measurement_groups())
    evaluations = {q.name.meaning: q.value.meaning for g in sr.content.get_image_measurement_groups()
                   for q in g.get_qualitative_evaluations()}
    assert evaluations["Predicted hypoperfusion lesion"] == "Withheld: failed a plausibility check"
    measured = {m.name.meaning for g in sr.content.get_image_measurement_groups() for m in g.get_measurements()}
    assert "Mismatch volume" not in measured and "Mismatch ratio" not in measured
    # The summary capture is its text lines over the overview picture: no lesion painted in the picture.
    picture_rows = Image.open(tmp_path / "out" / "overview.png").height
    page = pydicom.dcmread(str(tmp_path / "dicom" / SUMMARY_FILE)).pixel_array
    Image.fromarray(page[-picture_rows:]).save(tmp_path / "sc.png")
    assert _amber_pixels(tmp_path / "sc.png") == 0


def test_no_side_and_no_core_does_not_run_the_u_net_and_says_what_would(server, tmp_path):
    result, metrics = _infer(server, "philips_classic_dwi", [], tmp_path / "out")
    h = metrics["hypoperfusion"]
    assert h["side"] == "unknown" and h["side_inferred"] is False and h["core_ml"] < 0.5
    assert h["lesion_withheld"]["status"] == "not_run" and h["hypoperfusion_ml"] is None
    assert "left, right or bilateral" in h["lesion_withheld"]["reasons"][0]
    assert "NOT ASSESSED" in result.stdout and "bilateral" in " ".join(result.stdout.split())
    assert _amber_pixels(tmp_path / "out" / "overview.png") == 0

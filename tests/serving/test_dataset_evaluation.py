"""`collat-train evaluate --data` through the real server, on datasets written here from phantom cases in the
published layouts (the truth known exactly) and on a folder of DICOM studies with a real scan among them: the
report's figures equal the phantom's computed directly, subjects without what a figure needs are counted, a rerun
resumes, and the report folder holds its tables and pictures. Weights fine-tuned on such a dataset serve through
their network card."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from dicom_writer import write_classic, write_phantom_study
from realdata import AVAILABLE, REALDATA
from serving_helpers import build_cpu_repository

from collat_client.imaging.evaluation import dice, phase_metrics
from collat_ensemble.phantom import generate_case
from collat_ensemble.server.launcher import TritonServer
from collat_export.datasets.phantom_dataset import write_phantom_dataset
from collat_export.training.cli import main as train_cli
from collat_export.weights import demo_checkpoint

BIDS_SEEDS = (2, 3)  # an MCA stroke each, DCE and DSC


def _evaluate(server, data: Path, out: Path, *extra: str):
    result = CliRunner().invoke(train_cli, ["evaluate", "--data", str(data), "--out", str(out),
                                            "--url", server.http_url, *extra])
    assert result.exit_code == 0, result.output
    return result


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "subjects.csv").open() as f:
        return {r["subject"]: r for r in csv.DictReader(f)}


def _served(out: Path, subject: str, name: str) -> np.ndarray:
    return np.asanyarray(nib.load(str(out / "subjects" / subject / f"{name}.nii.gz")).dataobj)


@pytest.fixture(scope="module")
def bids_report(server, tmp_path_factory):
    root = write_phantom_dataset(tmp_path_factory.mktemp("bids") / "ds", BIDS_SEEDS, "bids")
    out = tmp_path_factory.mktemp("report") / "bids"
    return root, out, _evaluate(server, root, out)


def test_the_report_equals_the_phantom_figures_computed_directly(bids_report):
    _, out, result = bids_report
    rows = _rows(out)
    core_dices = []
    for seed in BIDS_SEEDS:
        case = generate_case(seed, modality="dsc" if seed % 2 else "dce", space="native")
        row = rows[f"sub-{seed:03d}"]
        assert (row["status"], row["pipeline"]) == ("done", "stroke_triage")
        core_dice = dice(_served(out, row["subject"], "core_mask") > 0, case.core)
        assert float(row["core_dice"]) == pytest.approx(core_dice, abs=1e-12)
        assert float(row["lesion_dice"]) == pytest.approx(dice(_served(out, row["subject"], "lesion_mask") > 0,
                                                               case.lesion), abs=1e-12)
        assert float(row["reference_core_ml"]) == pytest.approx(case.truth["core_ml"], abs=0.01)
        assert float(row["reference_hypoperfusion_ml"]) == pytest.approx(case.truth["hypoperfusion_ml"], abs=0.01)
        assert row["reference_defuse3"] == str(case.truth["defuse3_target_mismatch"])
        assert row["reference_defuse3_source"] == "table"
        assert int(row["reference_cps"]) == case.truth["collateral_grade"]
        maps = phase_metrics(_served(out, row["subject"], "collateral_maps").astype(np.float32),
                             case.reference_maps, _served(out, row["subject"], "brain_mask") > 0)
        for phase in ("arterial", "delay", "mean"):
            for metric in ("r2", "ssim", "tanimoto", "mae"):
                assert float(row[f"maps_{metric}_{phase}"]) == pytest.approx(maps[phase][metric], abs=1e-9)
        core_dices.append(core_dice)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["core_dice"]["median"] == pytest.approx(float(np.median(core_dices)))
    assert summary["cps"]["cases"] == 2 and summary["defuse3"]["cases"] == 2
    assert f"core Dice    median {np.median(core_dices):.3f} over 2" in result.output
    md = (out / "summary.md").read_text()
    assert f"| core (ADC) vs reference diffusion lesion | 2 | {np.median(core_dices):.3f} |" in md
    for name in ("summary.html", "plots/bland_altman_core.png", "plots/confusion_defuse3.png",
                 "plots/confusion_cps.png", "worst/sub-002.png", "worst/sub-003.png"):
        assert (out / name).stat().st_size > 0, name


def test_a_rerun_resumes_and_sends_only_what_is_not_done(server, bids_report):
    root, out, _ = bids_report
    before = (out / "subjects" / "sub-002" / "status.json").stat().st_mtime_ns
    shutil.rmtree(out / "subjects" / "sub-003")  # as if the run had stopped before it
    result = _evaluate(server, root, out)
    assert "sub-002: done before, kept" in result.output and "sub-003: done (stroke_triage" in result.output
    assert (out / "subjects" / "sub-002" / "status.json").stat().st_mtime_ns == before
    assert _rows(out)["sub-003"]["status"] == "done"
    # A "done" whose results went missing is sent again, not scored against nothing.
    (out / "subjects" / "sub-002" / "metrics.json").unlink()
    again = _evaluate(server, root, out)
    assert "sub-002: done (stroke_triage" in again.output and "sub-003: done before, kept" in again.output


def test_soop_and_isles_layouts_count_what_they_cannot_score(server, tmp_path):
    soop = write_phantom_dataset(tmp_path / "soop", [5], "soop")
    # A second SOOP subject with no NIHSS: sent as not known, its core is measured and scored, the U-Net not run.
    shutil.copytree(soop / "sub-5", soop / "sub-6")
    shutil.copytree(soop / "derivatives/lesion_masks/sub-5", soop / "derivatives/lesion_masks/sub-6")
    for path in [*(soop / "sub-6").rglob("*"), *(soop / "derivatives/lesion_masks/sub-6").rglob("*")]:
        if path.is_file():
            path.rename(path.with_name(path.name.replace("sub-5", "sub-6")))
    with (soop / "participants.tsv").open("a") as f:
        f.write("sub-6\t60\tn/a\n")
    out = tmp_path / "soop_report"
    result = _evaluate(server, soop, out)
    rows = _rows(out)
    assert rows["sub-6"]["status"] == "done" and float(rows["sub-6"]["core_dice"]) > 0.9
    assert rows["sub-6"]["core_ml"] == rows["sub-5"]["core_ml"]  # the same scan: the score does not touch the core
    assert rows["sub-6"]["lesion_withheld"] == ("no NIHSS was given: the hypoperfusion network was not run "
                                                "(give the NIHSS, 0-42)")
    assert rows["sub-6"]["hypoperfusion_ml"] == "" and rows["sub-6"]["dawn"] == ""
    assert rows["sub-5"]["pipeline"] == "hypoperfusion_pipeline" and float(rows["sub-5"]["core_dice"]) > 0.9
    assert rows["sub-5"]["reference_hypoperfusion_ml"] == ""  # SOOP draws the diffusion lesion only
    metrics = json.loads((out / "subjects" / "sub-5" / "metrics.json").read_text())
    assert float(rows["sub-5"]["core_ml"]) == metrics["hypoperfusion"]["core_ml"]  # the served METRICS' volume
    # A subject with a DWI and no ADC is listed with why, not dropped.
    (soop / "sub-7" / "dwi").mkdir(parents=True)
    shutil.copy(soop / "sub-5/dwi/sub-5_rec-TRACE_dwi.nii.gz", soop / "sub-7/dwi/sub-7_rec-TRACE_dwi.nii.gz")
    result = _evaluate(server, soop, out)
    assert "sub-5: done before, kept" in result.output
    assert _rows(out)["sub-7"]["reason"] == "a DWI without its ADC: the diffusion analysis needs both"
    assert "3 subjects: 2 analysed, 0 failed, 1 skipped" in result.output
    isles = write_phantom_dataset(tmp_path / "isles", [8, 9], "isles22")
    adc = next((isles / "sub-strokecase0009").rglob("*_adc.nii.gz"))
    adc.write_bytes(b"not a NIfTI")  # a broken subject fails with its reason; the others go on
    out = tmp_path / "isles_report"
    _evaluate(server, isles, out, "--concurrency", "2")  # both in flight at once; the broken one still says why
    rows = _rows(out)
    assert rows["sub-strokecase0008"]["status"] == "done"
    assert rows["sub-strokecase0009"]["status"] == "failed" and str(adc) in rows["sub-strokecase0009"]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"][0]["subject"] == "sub-strokecase0009"
    assert "sub-strokecase0009: failed" in (out / "summary.md").read_text()


def test_a_folder_of_dicom_studies_with_a_real_scan(server, tmp_path):
    root = tmp_path / "studies"
    case = generate_case(4, space="native")
    write_phantom_study(root / "phantom-4", case, diffusion_writer=write_classic, syntax=None)
    table = ["participant_id\tnihss\tage\tside", f"phantom-4\t{case.nihss}\t{case.age}\t{case.clinical_side}"]
    if AVAILABLE:  # a healthy volunteer's b=1000 DWI (Philips, classic DICOM)
        shutil.copytree(REALDATA / "philips_classic_dwi", root / "philips")
        table.append("philips\t10\t70\tleft")
    (root / "participants.tsv").write_text("\n".join(table) + "\n")
    out = tmp_path / "report"
    _evaluate(server, root, out)
    rows = _rows(out)
    phantom = rows["phantom-4"]
    assert (phantom["status"], phantom["pipeline"]) == ("done", "stroke_triage")
    assert float(phantom["core_ml"]) == pytest.approx(case.truth["core_ml"], rel=0.15)
    assert phantom["core_dice"] == ""  # a DICOM study carries no reference mask: counted, not scored
    summary = json.loads((out / "summary.json").read_text())
    assert summary["no_reference"] == (["phantom-4", "philips"] if AVAILABLE else ["phantom-4"])
    assert "* phantom-4: analysed, no reference to score it against" in (out / "summary.md").read_text()
    if AVAILABLE:
        real = rows["philips"]
        assert real["status"] == "done" and float(real["core_ml"]) < 0.5
        # A healthy brain: no lesion, or one withheld with its reason, never a DEFUSE 3 "yes".
        assert real["lesion_withheld"] or float(real["hypoperfusion_ml"]) < 10.0
        assert real["defuse3"] in ("", "False")


def test_weights_fine_tuned_on_a_dataset_serve_and_are_evaluated_through_the_server(bids_report, tmp_path):
    """`collat-train hypo --data` -> its network card -> a model repository -> the real server -> the report."""
    root, _, _ = bids_report
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "collat_export.training.cli", "hypo", "--data", str(root),
                              "--epochs", "1", "--phantom-fraction", "0", "--eval-seeds", "0-0", "--threads", "1",
                              "--workers", "1", "--init", str(demo_checkpoint("hypo")), "--slabs-per-case", "1",
                              "--out", str(run)], capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    repository = build_cpu_repository(tmp_path / "model_repository", mrod_preset="tiny",
                                      hypo_card=run / "network_card.yaml")
    with TritonServer(repository, log_file=tmp_path / "tritonserver.log") as running:
        out = tmp_path / "report"
        _evaluate(running, root, out)
    rows = _rows(out)
    assert all(r["status"] == "done" for r in rows.values())
    metrics = json.loads((out / "subjects" / "sub-002" / "metrics.json").read_text())
    assert metrics["models"]["hypoperfusion_unet"]["preset"] == "imported:hypo-ds"
    assert "hypoperfusion_unet 1 (imported:hypo-ds)" in (out / "summary.md").read_text()

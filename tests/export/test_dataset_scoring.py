"""The cohort statistics, one subject's scoring against references on its own or another grid, and the report
folder, on small arrays whose figures are known by hand (no server: the served path is tested in
tests/serving/test_dataset_evaluation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from collat_export.datasets import Clinical, Dataset, Subject, SubjectPaths
from collat_export.datasets.report import html_page, write_report
from collat_export.datasets.scoring import on_grid, score_subject, summarize
from collat_export.datasets.served import Outcome, request_for
from collat_export.statistics import binary_agreement, bland_altman, grade_agreement, lins_ccc
from collat_export.training.cli import main as train_cli


def test_lins_ccc_penalises_bias_that_pearson_ignores():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert lins_ccc(x, x) == pytest.approx(1.0)
    # y = x + 1: Pearson r = 1, but CCC = 2 var / (2 var + 1) with var = 1.25 (population).
    assert lins_ccc(x + 1.0, x) == pytest.approx(2.5 / 3.5)
    assert lins_ccc([5.0], [5.0]) is None


def test_bland_altman_limits():
    ba = bland_altman([10.0, 12.0, 14.0], [9.0, 10.0, 11.0])  # differences 1, 2, 3
    assert ba == pytest.approx({"pairs": 3, "mean_difference": 2.0, "sd_difference": 1.0,
                                "lower_limit": 2.0 - 1.96, "upper_limit": 2.0 + 1.96})
    assert bland_altman([1.0], [1.0]) is None


def test_binary_agreement_and_rates_without_a_denominator():
    a = binary_agreement([True, True, False, False, True], [True, False, False, True, True])
    assert (a["true_positive"], a["false_positive"], a["false_negative"], a["true_negative"]) == (2, 1, 1, 1)
    assert (a["sensitivity"], a["specificity"], a["accuracy"]) == (pytest.approx(2 / 3), 0.5, 0.6)
    assert binary_agreement([False, False], [False, False])["sensitivity"] is None


def test_grade_agreement_counts_rows_as_the_reference():
    g = grade_agreement([1, 2, 5], [1, 3, 5])
    assert (g["cases"], g["exact"], g["within_one"]) == (3, pytest.approx(2 / 3), 1.0)
    assert g["confusion"][3][2] == 1 and g["confusion"][5][5] == 1
    assert grade_agreement([], [])["weighted_kappa"] is None
    per_grade = grade_agreement([0, 0, 3, 1, 5], [0, 1, 1, 1, 5])["per_grade"]  # by the reference grade
    assert per_grade == {"0": {"cases": 1, "exact": 1.0, "within_one": 1.0},
                         "1": {"cases": 3, "exact": pytest.approx(1 / 3), "within_one": pytest.approx(2 / 3)},
                         "5": {"cases": 1, "exact": 1.0, "within_one": 1.0}}


def test_a_mask_on_another_grid_is_resampled_through_both_affines():
    mask = np.zeros((10, 10, 4), dtype=bool)
    mask[2:5, 3:6, 1] = True
    fine = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted = fine.copy()
    shifted[0, 3] = 2.0  # the reference grid starts 2 mm further along x
    back = on_grid(mask.astype(np.float32), shifted, mask.shape, fine, order=0) > 0.5
    assert back.sum() == mask.sum()
    assert np.array_equal(np.argwhere(back)[:, 0], np.argwhere(mask)[:, 0] + 2)
    assert on_grid(mask, fine, mask.shape, fine, order=0) is mask  # the same grid: untouched


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])  # 20 uL voxels


def _served_subject(tmp_path: Path, name: str, core_voxels: int, lesion_voxels: int, *, withheld: bool = False,
                    clinical: Clinical | None = None, reference_lesion: bool = True) -> tuple[Subject, Path]:
    """A served result folder and its references: the served core and lesion are the reference's first voxels."""
    shape = (20, 20, 5)

    def block(n: int) -> np.ndarray:
        m = np.zeros(shape, dtype=np.uint8)
        m.reshape(-1)[:n] = 1
        return m.reshape(shape)

    folder = tmp_path / "out" / "subjects" / name
    _nifti(folder / "core_mask.nii.gz", block(core_voxels), AFFINE)
    _nifti(folder / "lesion_mask.nii.gz", block(lesion_voxels), AFFINE)
    metrics = {"hypoperfusion": {
        "core_ml": core_voxels * 0.02, "hypoperfusion_ml": None if withheld else lesion_voxels * 0.02,
        "lesion_withheld": {"status": "withheld", "reasons": ["outside what the network was trained on"],
                            "drawn_ml": lesion_voxels * 0.02} if withheld else None,
        "defuse3": None if withheld else {"eligible": lesion_voxels * 0.02 - core_voxels * 0.02 >= 15},
        "dawn": None}, "collateral": None, "models": {"hypoperfusion_unet": {"version": "1", "preset": "tiny"}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    refs = tmp_path / "refs" / name
    paths = SubjectPaths(core_mask=_nifti(refs / "core.nii.gz", block(100), AFFINE),
                         lesion_mask=_nifti(refs / "lesion.nii.gz", block(1000), AFFINE) if reference_lesion
                         else None)
    return Subject(name, paths, clinical or Clinical(nihss=12, age=70.0)), folder


def test_one_subject_scored_against_its_references(tmp_path: Path):
    subject, folder = _served_subject(tmp_path, "sub-1", core_voxels=50, lesion_voxels=1500)
    row = score_subject(subject, folder, Outcome("sub-1", "done", "", "hypoperfusion_pipeline", 2.0, {}))
    assert row["core_dice"] == pytest.approx(2 * 50 / 150)
    assert row["lesion_dice"] == pytest.approx(2 * 1000 / 2500)
    assert (row["reference_core_ml"], row["reference_hypoperfusion_ml"]) == (2.0, 20.0)
    # No decision in the table: the reference DEFUSE 3 is the criteria on the reference volumes (2 / 20 mL: yes).
    assert (row["reference_defuse3"], row["reference_defuse3_source"]) == (True, "reference masks")
    assert row["reference_dawn"] is True  # age 70, NIHSS 12, core 2 mL: group B
    assert row["defuse3"] is True


def test_withheld_and_missing_references_are_counted_not_scored(tmp_path: Path):
    good = _served_subject(tmp_path, "sub-1", 100, 1000)
    held = _served_subject(tmp_path, "sub-2", 100, 4000, withheld=True)
    bare = _served_subject(tmp_path, "sub-3", 100, 1000, reference_lesion=False,
                           clinical=Clinical(nihss=3, age=50.0, defuse3=False))
    # A mimic: the reference draws no lesion, so Dice says nothing; the volumes still count.
    mimic_subject, mimic_folder = _served_subject(tmp_path, "sub-5", 0, 0)
    empty = _nifti(tmp_path / "refs" / "sub-5" / "core.nii.gz", np.zeros((20, 20, 5), np.uint8), AFFINE)
    mimic = (Subject("sub-5", SubjectPaths(core_mask=empty), mimic_subject.clinical), mimic_folder)
    rows = [score_subject(s, f, Outcome(s.id, "done", "", "hypoperfusion_pipeline", 1.0, {}))
            for s, f in (good, held, bare, mimic)]
    assert "core_dice" not in rows[3] and rows[3]["reference_core_ml"] == 0.0
    rows.append(score_subject(Subject("sub-4", SubjectPaths(), Clinical()), tmp_path / "none",
                              Outcome("sub-4", "skipped", "no perfusion series and no DWI with its ADC", None, None,
                                      {})))
    assert "lesion_dice" not in rows[1] and rows[1]["lesion_withheld"] == "outside what the network was trained on"
    assert rows[2]["reference_defuse3_source"] == "table"
    s = summarize(rows)
    assert (s["subjects"], s["done"], s["lesion_withheld"]) == (5, 4, 1)
    assert s["no_reference"] == []  # every analysed subject had something to be scored against
    assert s["core_dice"]["empty_reference"] == 1 and s["core_volume"]["pairs"] == 4
    assert s["skipped"] == [{"subject": "sub-4", "reason": "no perfusion series and no DWI with its ADC"}]
    assert s["lesion_dice"]["scored"] == 1 and s["core_dice"]["scored"] == 3
    assert s["lesion_dice"]["median"] == pytest.approx(1.0)
    assert s["defuse3"]["withheld"] == 1  # sub-2: a reference decision, no served one
    assert s["defuse3"]["cases"] == 2  # sub-5 has no reference lesion, so no reference decision
    assert s["hypoperfusion_volume"]["pairs"] == 1  # the withheld lesion has no served volume
    assert s["cps"]["cases"] == 0 and s["maps"]["scored"] == 0


def test_a_subject_is_sent_with_what_it_has_or_skipped_with_why(tmp_path: Path):
    both = Subject("a", SubjectPaths(dwi=tmp_path / "d", adc=tmp_path / "a", perfusion=tmp_path / "p"),
                   Clinical(nihss=4, side="left"))
    kwargs, sent = request_for(both)
    assert set(sent) == {"perfusion", "dwi", "adc"}
    assert kwargs["clinical"].side == "left" and kwargs["clinical"].nihss == 4
    # No NIHSS in the table: sent as not known (the server measures the core and says why the U-Net did not run).
    kwargs, sent = request_for(Subject("c", SubjectPaths(dwi=tmp_path / "d", adc=tmp_path / "a"), Clinical()))
    assert set(sent) == {"dwi", "adc"} and kwargs["clinical"].nihss is None and kwargs["clinical"].side == "unknown"
    assert request_for(Subject("d", SubjectPaths(dwi=tmp_path / "d"), Clinical(nihss=3))) == \
        "a DWI without its ADC: the diffusion analysis needs both"
    assert request_for(Subject("e", SubjectPaths(), Clinical(nihss=3))) == \
        "no perfusion series and no DWI with its ADC"


def test_the_report_folder_holds_csv_summaries_plots_and_worst_cases(tmp_path: Path):
    subjects, rows = [], []
    for i, (core, lesion) in enumerate(((100, 1000), (80, 900), (30, 1400))):
        dwi = _nifti(tmp_path / "refs" / f"sub-{i}" / "dwi.nii.gz", np.random.default_rng(i).random((20, 20, 5)),
                     AFFINE)
        s, folder = _served_subject(tmp_path, f"sub-{i}", core, lesion)
        s = Subject(s.id, SubjectPaths(dwi=dwi, core_mask=s.paths.core_mask, lesion_mask=s.paths.lesion_mask),
                    s.clinical)
        Image.new("RGB", (200, 300), "black").save(folder / "overview.png")
        subjects.append(s)
        rows.append(score_subject(s, folder, Outcome(s.id, "done", "", "hypoperfusion_pipeline", 1.0, {})))
    summary = summarize(rows)
    assert summary["worst"][0] == "sub-2"  # core Dice 2*30/130, the lowest
    dataset = Dataset(root=tmp_path / "refs", layout="BIDS", subjects=tuple(subjects), file_digest="0" * 64)
    files = write_report(tmp_path / "out", dataset, rows, summary, "127.0.0.1:8000")
    names = {p.relative_to(tmp_path / "out").as_posix() for p in files}
    assert {"summary.html", "summary.md", "summary.json", "subjects.csv", "plots/bland_altman_core.png",
            "plots/confusion_defuse3.png", "worst/sub-2.png"} <= names
    assert all(p.stat().st_size > 0 for p in files)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert f"| core (ADC) vs reference diffusion lesion | 3 | {summary['core_dice']['median']:.3f} |" in md
    page = (tmp_path / "out" / "summary.html").read_text()
    assert page.count("<table>") == sum(line.startswith("|---") for line in md.splitlines()) == 4
    assert '<img src="worst/sub-2.png"' in page
    csv_lines = (tmp_path / "out" / "subjects.csv").read_text().splitlines()
    assert csv_lines[0].startswith("subject,status,reason,pipeline,seconds,core_ml,reference_core_ml,core_dice")
    assert len(csv_lines) == 4


def test_html_page_escapes_and_renders_tables():
    page = html_page("# T\n\n| a | b |\n|---|---|\n| <x> | 1 |\n\n* item\n")
    assert "<h1>T</h1>" in page and "<th>a</th>" in page and "<td>&lt;x&gt;</td>" in page and "<li>item</li>" in page


def test_evaluate_with_data_needs_out_and_names_a_missing_server(tmp_path: Path):
    root = tmp_path / "ds"
    _nifti(root / "sub-1/dwi/sub-1_dwi.nii.gz", np.zeros((4, 4, 4), np.float32), np.eye(4))
    runner = CliRunner()
    result = runner.invoke(train_cli, ["evaluate", "--data", str(root)])
    assert result.exit_code == 2 and "--data needs --out" in result.output
    result = runner.invoke(train_cli, ["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "nowhere: not a folder" in result.output
    result = runner.invoke(train_cli, ["evaluate", "--data", str(root), "--out", str(tmp_path / "r"),
                                       "--url", "127.0.0.1:1"])
    assert result.exit_code == 3
    assert "cannot connect" in result.output and "run the same command to resume" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(train_cli, ["evaluate"])
    assert result.exit_code == 2 and "give --model and --checkpoint" in result.output

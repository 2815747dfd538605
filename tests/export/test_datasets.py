"""The dataset reader on tiny datasets built here in each layout, and on the real SOOP participants table."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from collat_export.datasets import (
    DICOM_STUDIES,
    GENERIC_BIDS,
    ISLES22,
    SOOP,
    DatasetError,
    DatasetLayout,
    detect_layout,
    read_dataset,
)

SOOP_METADATA = Path("/work/shared/datasets/soop_metadata")
MR = "1.2.840.10008.5.1.4.1.1.4"


def nifti(path: Path, shape: tuple[int, ...] = (4, 4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.uint8), np.eye(4)), path)
    return path


def soop_subject(root: Path, n: str, adc: bool = True, mask: bool = True) -> None:
    nifti(root / f"sub-{n}/dwi/sub-{n}_rec-TRACE_dwi.nii.gz")
    if adc:
        nifti(root / f"sub-{n}/dwi/sub-{n}_rec-ADC_dwi.nii.gz")
    if mask:
        nifti(root / f"derivatives/lesion_masks/sub-{n}/dwi/sub-{n}_space-TRACE_desc-lesionAcute_mask.nii.gz")


def isles_subject(root: Path, case: str, mask: str | None = "ses") -> None:
    sub = f"sub-strokecase{case}"
    nifti(root / f"{sub}/ses-0001/dwi/{sub}_ses-0001_dwi.nii.gz")
    nifti(root / f"{sub}/ses-0001/dwi/{sub}_ses-0001_adc.nii.gz")
    if mask == "ses":
        nifti(root / f"derivatives/{sub}/ses-0001/{sub}_ses-0001_msk.nii.gz")
    elif mask == "dwi":
        nifti(root / f"derivatives/{sub}/ses-0001/dwi/{sub}_ses-0001_msk.nii.gz")


def tsv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


@pytest.fixture
def soop(tmp_path: Path) -> Path:
    """sub-2, sub-3 (no ADC), sub-5 (no lesion mask), sub-10; participants in SOOP's columns, n/a included."""
    root = tmp_path / "soop"
    for n in ("10", "2", "5", "3"):
        soop_subject(root, n, adc=n != "3", mask=n != "5")
    tsv(root / "participants.tsv", [["participant_id", "sex", "age", "nihss", "etiology"],
                                    ["sub-2", "M", "78", "17", '"2: Cardioembolism (e.g., atrial fibrillation)"'],
                                    ["sub-3", "F", "89+", "n/a", "5: Cryptogenic Stroke"],
                                    ["sub-5", "M", "58", "1", "n/a"],
                                    ["sub-10", "n/a", "n/a", "abc", "n/a"],
                                    ["sub-99", "F", "70", "4", "n/a"]])
    return root


def test_soop_subjects_in_natural_order_with_what_each_lacks(soop: Path):
    ds = read_dataset(soop)
    assert ds.layout == "SOOP"
    assert [s.id for s in ds.subjects] == ["sub-2", "sub-3", "sub-5", "sub-10"]
    by_id = {s.id: s for s in ds.subjects}
    two = by_id["sub-2"]
    assert two.paths.dwi == soop / "sub-2/dwi/sub-2_rec-TRACE_dwi.nii.gz"
    assert two.paths.adc == soop / "sub-2/dwi/sub-2_rec-ADC_dwi.nii.gz"
    # SOOP's acute lesion is the diffusion lesion: the reference for the served core.
    assert two.paths.core_mask == \
        soop / "derivatives/lesion_masks/sub-2/dwi/sub-2_space-TRACE_desc-lesionAcute_mask.nii.gz"
    assert (two.paths.perfusion, two.paths.lesion_mask, two.paths.dicom_study) == (None, None, None)
    assert (two.clinical.nihss, two.clinical.age, two.clinical.side) == (17, 78.0, None)
    # SOOP has no side, CPS or DEFUSE 3 columns: absent, never a problem; perfusion is no SOOP role, so not missing.
    assert two.missing == ("side", "cps_grade", "defuse3")
    assert two.problems == ()
    assert by_id["sub-3"].missing == ("adc", "nihss", "side", "cps_grade", "defuse3")
    assert by_id["sub-3"].clinical.age == 89.0  # "89+": the table's clamp
    assert by_id["sub-5"].missing[0] == "core_mask"
    ten = by_id["sub-10"]
    assert (ten.clinical.nihss, ten.clinical.age) == (None, None)
    assert ten.problems == ("nihss 'abc' is not a number",)
    assert ds.unmatched_participants == ("sub-99",)
    assert ds.listing() == [
        "sub-2: missing side, cps_grade, defuse3",
        "sub-3: missing adc, nihss, side, cps_grade, defuse3",
        "sub-5: missing core_mask, side, cps_grade, defuse3",
        "sub-10: missing nihss, age, side, cps_grade, defuse3; problems: nihss 'abc' is not a number",
    ]
    summary = ds.summary()
    assert {k: summary[k] for k in ("layout", "subjects", "with_dwi", "with_adc", "with_dwi_and_adc",
                                    "with_core_mask", "with_nihss", "with_age", "with_side", "with_problems",
                                    "participants_without_folder", "complete")} == {
        "layout": "SOOP", "subjects": 4, "with_dwi": 4, "with_adc": 3, "with_dwi_and_adc": 3, "with_core_mask": 3,
        "with_nihss": 2, "with_age": 3, "with_side": 0, "with_problems": 1, "participants_without_folder": 1,
        "complete": 0}


def test_isles22_both_mask_variants_and_no_participants_table(tmp_path: Path):
    root = tmp_path / "isles"
    isles_subject(root, "0002", mask="dwi")
    isles_subject(root, "0001", mask="ses")
    isles_subject(root, "0010", mask=None)
    ds = read_dataset(root)
    assert ds.layout == "ISLES22"
    assert [s.id for s in ds.subjects] == ["sub-strokecase0001", "sub-strokecase0002", "sub-strokecase0010"]
    one, two, ten = ds.subjects
    assert one.paths.adc == root / "sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_adc.nii.gz"
    assert one.paths.core_mask == \
        root / "derivatives/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_msk.nii.gz"
    assert two.paths.core_mask == \
        root / "derivatives/sub-strokecase0002/ses-0001/dwi/sub-strokecase0002_ses-0001_msk.nii.gz"
    assert one.missing == ("nihss", "age", "side", "cps_grade", "defuse3")
    assert ten.missing == ("core_mask", "nihss", "age", "side", "cps_grade", "defuse3")
    assert ten.problems == ()
    assert ds.summary()["with_core_mask"] == 2


def test_auto_detection_tells_the_layouts_apart(tmp_path: Path, soop: Path):
    isles = tmp_path / "isles"
    isles_subject(isles, "0001")
    generic = tmp_path / "generic"
    nifti(generic / "sub-01/dwi/sub-01_dwi.nii.gz")
    assert detect_layout(soop) is SOOP
    assert detect_layout(isles) is ISLES22
    assert detect_layout(generic) is GENERIC_BIDS
    bare = tmp_path / "bare"
    (bare / "sub-01/anat").mkdir(parents=True)
    assert detect_layout(bare) is GENERIC_BIDS  # no image anywhere: still BIDS, its subjects listed as lacking all
    assert read_dataset(bare).listing() == ["sub-01: missing dwi, adc, perfusion, core_mask, lesion_mask, "
                                            "tmax, reference_maps, nihss, age, side, cps_grade, defuse3"]
    # A SOOP dataset whose first subject lacks everything is still SOOP: the detector counts over several subjects.
    (soop / "sub-1").mkdir()
    assert detect_layout(soop) is SOOP
    # Forcing a layout that does not fit lists every image as missing rather than failing or dropping subjects.
    forced = read_dataset(isles, layout=SOOP)
    assert forced.layout == "SOOP"
    assert forced.subjects[0].missing[:3] == ("dwi", "adc", "core_mask")


def test_generic_bids_sessions_perfusion_and_an_adc_written_as_dwi(tmp_path: Path):
    root = tmp_path / "bids"
    dwi = nifti(root / "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz")
    adc = nifti(root / "sub-01/ses-1/dwi/sub-01_ses-1_rec-ADC_dwi.nii.gz")
    perf = nifti(root / "sub-01/ses-1/perf/sub-01_ses-1_dsc.nii.gz", (4, 4, 4, 3))
    mask = nifti(root / "derivatives/manual/sub-01/ses-1/anat/sub-01_ses-1_desc-lesion_mask.nii.gz")
    tmax = nifti(root / "derivatives/perfusion/sub-01/sub-01_Tmax.nii.gz")
    hypo = nifti(root / "derivatives/perfusion/sub-01/sub-01_desc-hypoperfusion_mask.nii.gz")
    phases = nifti(root / "derivatives/perfusion/sub-01/sub-01_desc-collateral_maps.nii.gz", (4, 4, 4, 5))
    nifti(root / "sub-02/dwi/sub-02_dwi.nii")
    ds = read_dataset(root)
    assert ds.layout == "BIDS"
    one, two = ds.subjects
    assert (one.paths.dwi, one.paths.adc, one.paths.perfusion, one.paths.core_mask, one.paths.lesion_mask,
            one.paths.tmax, one.paths.reference_maps) == (dwi, adc, perf, mask, hypo, tmax, phases)
    assert one.missing == ("nihss", "age", "side", "cps_grade", "defuse3")
    assert two.paths.dwi == root / "sub-02/dwi/sub-02_dwi.nii"
    assert two.missing[:6] == ("adc", "perfusion", "core_mask", "lesion_mask", "tmax", "reference_maps")
    # Two sessions' DWIs: the first is used, and the subject says so.
    nifti(root / "sub-01/ses-2/dwi/sub-01_ses-2_dwi.nii.gz")
    again = read_dataset(root).subjects[0]
    assert again.paths.dwi == dwi
    assert again.problems == ("dwi: 2 files match sub-{sub}/ses-{ses}/dwi/sub-{sub}*_dwi.nii*, "
                              "used sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz",)


def test_the_digest_is_stable_and_follows_the_used_files(soop: Path):
    first = read_dataset(soop).file_digest
    assert len(first) == 64
    assert read_dataset(soop).file_digest == first
    (soop / "README").write_text("not a subject's file")
    nifti(soop / "sub-2/anat/sub-2_T1w.nii.gz")  # a file no role reads
    assert read_dataset(soop).file_digest == first
    nifti(soop / "sub-3/dwi/sub-3_rec-ADC_dwi.nii.gz")  # sub-3's missing ADC arrives
    second = read_dataset(soop).file_digest
    assert second != first
    with (soop / "participants.tsv").open("a") as f:  # the labels are part of the data
        f.write("sub-100\tF\t60\t3\tn/a\n")
    assert read_dataset(soop).file_digest != second


def test_side_cps_and_defuse3_columns_and_their_problems(tmp_path: Path):
    root = tmp_path / "ds"
    for n in range(1, 8):
        soop_subject(root, str(n))
    tsv(root / "participants.tsv", [["participant_id", "Stroke_Side", "NIHSS", "cps", "defuse3", "age"],
                                    ["sub-1", "L", "14.0", "3", "yes", "71.5"],
                                    ["sub-2", "Right", "43", "6", "1", "-3"],
                                    ["sub-3", "bilateral", "2.5", "n/a", "0", "n/a"],
                                    ["sub-4", "up", "7", "x", "maybe", "60"],
                                    ["sub-5", "unknown", "0", "0", "FALSE", "80"],
                                    ["6", "r", "5", "5", "true", "50"],  # an id without sub-
                                    ["sub-5", "left", "1", "1", "1", "81"]])  # a repeated id
    by_id = {s.id: s for s in read_dataset(root, SOOP).subjects}
    c = by_id["sub-1"].clinical
    assert (c.side, c.nihss, c.cps_grade, c.defuse3, c.age) == ("left", 14, 3, True, 71.5)
    assert by_id["sub-2"].clinical.side == "right"
    assert by_id["sub-2"].problems == ("nihss '43' is outside 0-42", "age '-3' is outside 0-120",
                                       "cps_grade '6' is outside 0-5")
    assert by_id["sub-3"].clinical.side == "bilateral"
    assert by_id["sub-3"].clinical.defuse3 is False
    assert by_id["sub-3"].problems == ("nihss '2.5' is not an integer",)
    four = by_id["sub-4"]
    assert (four.clinical.side, four.clinical.cps_grade, four.clinical.defuse3) == (None, None, None)
    assert four.problems == ("side 'up' is not left, right or bilateral", "cps_grade 'x' is not a number",
                             "defuse3 'maybe' is not yes/no (1/0, true/false)")
    five = by_id["sub-5"]
    assert (five.clinical.side, five.clinical.age, five.clinical.defuse3) == (None, 80.0, False)
    assert five.problems == ("participants.tsv lists sub-5 2 times; used the first row",)
    assert by_id["sub-6"].clinical.side == "right"
    assert by_id["sub-7"].problems == ("not in participants.tsv",)
    assert by_id["sub-7"].missing == ("nihss", "age", "side", "cps_grade", "defuse3")


def test_custom_layout_columns(tmp_path: Path):
    root = tmp_path / "ds"
    soop_subject(root, "1")
    tsv(root / "participants.tsv", [["participant_id", "admission_score", "hemisphere"], ["sub-1", "9", "R"]])
    layout = DatasetLayout(name="site", dwi=SOOP.dwi, adc=SOOP.adc, nihss_columns="admission_score",
                           side_columns=("hemisphere",))
    subject = read_dataset(root, layout).subjects[0]
    assert (subject.clinical.nihss, subject.clinical.side) == (9, "right")
    assert subject.missing == ("age", "cps_grade", "defuse3")


@pytest.mark.skipif(not (SOOP_METADATA / "participants.tsv").exists(),
                    reason=f"the real SOOP participants table is not at {SOOP_METADATA}")
def test_the_real_soop_participants_table(tmp_path: Path):
    real = SOOP_METADATA / "participants.tsv"
    with real.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ids = [row["participant_id"] for row in rows[:3]]
    na = next(row for row in rows if row["nihss"] == "n/a" and row["age"] == "n/a")
    clamped = next(row for row in rows if row["age"] == "89+")
    chosen = list({row["participant_id"]: row for row in [*rows[:3], na, clamped]}.values())
    root = tmp_path / "soop"
    root.mkdir()
    shutil.copy(real, root / "participants.tsv")
    for row in chosen:
        soop_subject(root, row["participant_id"].removeprefix("sub-"))
    ds = read_dataset(root)
    assert ds.layout == "SOOP"
    assert [s.id for s in ds.subjects][:3] == ids  # the table's first ids are in natural order already
    assert len(ds.unmatched_participants) == len(rows) - len(chosen)
    by_id = {s.id: s for s in ds.subjects}
    for row in chosen:
        c = by_id[row["participant_id"]].clinical
        assert c.nihss == (None if row["nihss"] == "n/a" else int(row["nihss"])), row["participant_id"]
        assert c.age == (None if row["age"] == "n/a" else float(row["age"].rstrip("+"))), row["participant_id"]
        assert by_id[row["participant_id"]].problems == ()
    assert (by_id["sub-2"].clinical.nihss, by_id["sub-2"].clinical.age) == (17, 78.0)
    assert by_id[na["participant_id"]].missing == ("nihss", "age", "side", "cps_grade", "defuse3")
    assert by_id[clamped["participant_id"]].clinical.age == 89.0


def dicom_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MR, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)  # pydicom 3: writes the 128-byte preamble and DICM
    return path


def test_dicom_study_folders(tmp_path: Path):
    root = tmp_path / "studies"
    dicom_file(root / "patient10/series1/IM0001")
    dicom_file(root / "patient2/a/b/IM0001.dcm")
    (root / "notes").mkdir()
    (root / "notes/readme.txt").write_text("x" * 200)
    assert detect_layout(root) is DICOM_STUDIES
    ds = read_dataset(root)
    assert ds.layout == "DICOM"
    assert [s.id for s in ds.subjects] == ["notes", "patient2", "patient10"]
    notes, two, ten = ds.subjects
    assert (two.paths.dicom_study, two.paths.dwi) == (root / "patient2", None)
    assert two.missing == ("nihss", "age", "side", "cps_grade", "defuse3")
    assert notes.paths.dicom_study is None
    assert notes.missing[0] == "dicom_study"
    assert notes.problems == ("no DICOM file among the first 5 files",)
    assert ds.summary()["with_dicom_study"] == 2
    before = ds.file_digest
    dicom_file(root / "patient10/series2/IM0001")
    assert read_dataset(root).file_digest != before


def test_errors_name_the_folder_or_file(tmp_path: Path):
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'absent'}: not a folder$"):
        read_dataset(tmp_path / "absent")
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(DatasetError, match="file.txt: not a folder"):
        read_dataset(tmp_path / "file.txt")
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    with pytest.raises(DatasetError, match=f"^{empty}: no subjects"):
        read_dataset(empty)
    with pytest.raises(DatasetError, match=f"^{empty}: no subjects"):
        read_dataset(empty, SOOP)
    root = tmp_path / "ds"
    soop_subject(root, "1")
    table = tsv(root / "participants.tsv", [["subject", "nihss"], ["sub-1", "3"]])
    with pytest.raises(DatasetError) as caught:
        read_dataset(root)
    assert str(caught.value) == f"{table}: no participant_id column (columns: subject, nihss)"
    assert isinstance(caught.value, ValueError)
    table.write_text("")
    with pytest.raises(DatasetError, match="participants.tsv: empty, no header row"):
        read_dataset(root)


def test_a_broken_link_is_kept_and_named(tmp_path: Path):
    """A datalad clone without ``datalad get`` holds links to absent annexed content."""
    root = tmp_path / "ds"
    soop_subject(root, "1", adc=False)
    (root / "sub-1/dwi/sub-1_rec-ADC_dwi.nii.gz").symlink_to(tmp_path / "annex/absent")
    ds = read_dataset(root)
    subject = ds.subjects[0]
    assert subject.paths.adc == root / "sub-1/dwi/sub-1_rec-ADC_dwi.nii.gz"
    assert subject.problems == ("adc: sub-1/dwi/sub-1_rec-ADC_dwi.nii.gz is a broken link (annexed content "
                                "not fetched?)",)
    assert len(ds.file_digest) == 64


def test_every_side_alias_names_a_side_the_contract_knows():
    from collat_contract.clinical import SIDES
    from collat_export.datasets.bids import SIDE_ALIASES

    assert set(SIDE_ALIASES.values()) <= set(SIDES)


def test_the_command_lists_each_subject_and_refuses_a_folder_in_one_line(soop: Path, tmp_path: Path):
    import json

    from click.testing import CliRunner

    from collat_export.training.cli import main as train_cli

    shown = CliRunner().invoke(train_cli, ["dataset", "--data", str(soop)])
    assert shown.exit_code == 0, shown.output
    assert f"{soop}: SOOP layout, 4 subjects, 0 complete" in shown.output
    assert "  sub-3: missing adc, nihss, side, cps_grade, defuse3" in shown.output
    as_json = json.loads(CliRunner().invoke(train_cli, ["dataset", "--data", str(soop), "--json"]).output)
    assert as_json["file_digest"] == read_dataset(soop).file_digest and len(as_json["subjects"]) == 4
    assert as_json["subjects"][1]["paths"]["adc"] is None and as_json["subjects"][0]["clinical"]["nihss"] == 17
    refused = CliRunner().invoke(train_cli, ["dataset", "--data", str(tmp_path / "absent")])
    assert refused.exit_code == 2 and refused.output.strip() == f"error: {tmp_path / 'absent'}: not a folder"
    assert "Traceback" not in refused.output


def test_isles22_as_the_challenge_publishes_it_rawdata_beside_derivatives(tmp_path: Path):
    """The challenge's own example case: subjects under rawdata/, the images straight in the session folder."""
    root = tmp_path / "isles"
    sub = "sub-strokecase0009"
    dwi = nifti(root / f"rawdata/{sub}/ses-0001/{sub}_ses-0001_dwi.nii.gz")
    adc = nifti(root / f"rawdata/{sub}/ses-0001/{sub}_ses-0001_adc.nii.gz")
    mask = nifti(root / f"derivatives/{sub}/ses-0001/{sub}_ses-0001_msk.nii.gz")
    ds = read_dataset(root)
    assert ds.layout == "ISLES22" and [s.id for s in ds.subjects] == [sub]
    assert (ds.subjects[0].paths.dwi, ds.subjects[0].paths.adc, ds.subjects[0].paths.core_mask) == (dwi, adc, mask)

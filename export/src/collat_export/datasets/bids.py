"""Labelled stroke datasets (BIDS, or one DICOM study per subject) read into subjects, images and clinical fields.

A small reader of our own rather than pybids: pybids pulls heavy dependencies (SQLAlchemy, pandas, formulaic)
and indexes every entity of every file into a database, whereas training and model cards need a handful of
images per subject and five columns of the participants table. What the reader cannot find or parse is kept
with the subject (``missing``, ``problems``), never dropped silently, so the listing says why a subject will not
train. The layouts themselves are data (:mod:`.layouts`).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collat_contract.clinical import AGE_MAX, NIHSS_MAX, NIHSS_MIN
from collat_ensemble.territory import CPS_LABELS

from .layouts import (
    BUILTIN_LAYOUTS,
    CLAIM_ORDER,
    CLINICAL_FIELDS,
    DICOM_STUDIES,
    GENERIC_BIDS,
    RAW_FOLDER,
    ROLES,
    DatasetLayout,
)

MISSING_VALUES = frozenset({"", "n/a", "na", "nan", "none"})  # BIDS writes n/a; spreadsheets the others
SIDE_ALIASES: dict[str, str] = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right",
                                "rt": "right", "bilateral": "bilateral", "both": "bilateral", "bi": "bilateral"}
NOT_A_SIDE = frozenset({"unknown", "u"})  # stated as unknown: absent, not a problem
BOOLEANS: dict[str, bool] = {"1": True, "true": True, "yes": True, "y": True,
                             "0": False, "false": False, "no": False, "n": False}
DICOM_PROBE_FILES = 5  # files read per folder to decide whether it holds a DICOM study
DETECT_SUBJECTS = 8  # subjects tried per layout when guessing the layout
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
Table = dict[str, list[dict[str, str]]]  # participant id -> its rows (cells by column name)


class DatasetError(ValueError):
    """A dataset cannot be read at all; the one-line message names the folder or file and the problem."""


@dataclass(frozen=True)
class SubjectPaths:
    """Absolute paths of a subject's images (None: not found); ``dicom_study`` is the subject's folder."""

    dwi: Path | None = None
    adc: Path | None = None
    perfusion: Path | None = None
    core_mask: Path | None = None
    lesion_mask: Path | None = None
    tmax: Path | None = None
    reference_maps: Path | None = None
    dicom_study: Path | None = None


@dataclass(frozen=True)
class Clinical:
    """The participants table's fields the models and their cards use; None: absent or unreadable."""

    nihss: int | None = None
    age: float | None = None
    side: str | None = None  # left, right or bilateral
    cps_grade: int | None = None
    defuse3: bool | None = None


@dataclass(frozen=True)
class Subject:
    id: str
    paths: SubjectPaths
    clinical: Clinical
    missing: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    root: Path
    layout: str
    subjects: tuple[Subject, ...]
    file_digest: str  # sha256 of the used files' relative paths and sizes: names the data in a model card
    unmatched_participants: tuple[str, ...] = field(default=())  # table rows with no subject folder

    def summary(self) -> dict[str, Any]:
        """Counts for a model card or a log line: how many subjects have each image and clinical field."""
        subjects = self.subjects
        counts: dict[str, Any] = {"layout": self.layout, "subjects": len(subjects)}
        for role in (*ROLES, "dicom_study"):
            counts[f"with_{role}"] = sum(getattr(s.paths, role) is not None for s in subjects)
        counts["with_dwi_and_adc"] = sum(s.paths.dwi is not None and s.paths.adc is not None for s in subjects)
        for name in CLINICAL_FIELDS:
            counts[f"with_{name}"] = sum(getattr(s.clinical, name) is not None for s in subjects)
        counts["complete"] = sum(not s.missing and not s.problems for s in subjects)
        counts["with_problems"] = sum(bool(s.problems) for s in subjects)
        counts["participants_without_folder"] = len(self.unmatched_participants)
        return counts

    def listing(self) -> list[str]:
        """One line per subject, in order, saying what it lacks and why, so nobody wonders where a subject went."""
        lines = []
        for s in self.subjects:
            parts = []
            if s.missing:
                parts.append(f"missing {', '.join(s.missing)}")
            if s.problems:
                parts.append(f"problems: {'; '.join(s.problems)}")
            lines.append(f"{s.id}: {'; '.join(parts) if parts else 'complete'}")
        return lines


def natural_key(text: str) -> tuple[Any, ...]:
    """sub-2 before sub-10: digit runs compare as numbers (``re.split`` keeps text and numbers alternating)."""
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text)))


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _probe_files(folder: Path) -> Iterator[Path]:
    """The folder's files at any depth, in a stable order, hidden ones left out."""
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        for name in sorted((f for f in files if not f.startswith(".")), key=natural_key):
            yield Path(parent, name)


def is_dicom_study(folder: Path, probe: int = DICOM_PROBE_FILES) -> bool:
    """Whether one of the first few files holds the DICOM preamble ``DICM`` at byte 128 (series are not read)."""
    for i, path in enumerate(_probe_files(folder)):
        if i >= probe:
            return False
        if _is_dicom(path):
            return True
    return False


def _subject_folders(root: Path, layout: DatasetLayout) -> list[Path]:
    """The subject folders at the root or, for BIDS kept as ``rawdata/`` beside ``derivatives/``, in rawdata/."""
    folders = [p for p in root.glob(layout.subject_folders) if p.is_dir() and not p.name.startswith(".")]
    if layout.dicom_studies:
        folders = [p for p in folders if p.name not in {"derivatives", "code", "sourcedata", RAW_FOLDER}]
    elif not folders and (root / RAW_FOLDER).is_dir():
        folders = [p for p in (root / RAW_FOLDER).glob(layout.subject_folders)
                   if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: natural_key(p.name))


def _label(folder: Path) -> str:
    return folder.name.removeprefix("sub-")


def _matches(root: Path, pattern: str, label: str, role: str) -> list[Path]:
    """Files (or a reference-map folder) matching a pattern; :func:`glob.glob`, unlike ``Path.glob``, also returns a
    literal path that is a broken link, which the caller reports rather than calls missing."""
    filled = pattern.replace("{sub}", glob.escape(label)).replace("{ses}", "*")
    found = [p for p in map(Path, glob.glob(f"{glob.escape(str(root))}/{filled}", recursive=True))
             if p.is_symlink() or p.is_file() or (role == "reference_maps" and p.is_dir())]
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _resolve(root: Path, layout: DatasetLayout, label: str) -> tuple[dict[str, Path | None], list[str]]:
    """Each role's file: the first pattern that matches a file not already claimed by a more specific role."""
    found: dict[str, Path | None] = dict.fromkeys(ROLES)
    problems: list[str] = []
    claimed: set[Path] = set()
    for role in CLAIM_ORDER:
        for pattern in layout.patterns(role):
            candidates = [p for p in _matches(root, pattern, label, role) if p not in claimed]
            if not candidates:
                continue
            chosen = candidates[0]
            if len(candidates) > 1:
                problems.append(f"{role}: {len(candidates)} files match {pattern}, used "
                                f"{chosen.relative_to(root).as_posix()}")
            if chosen.is_symlink() and not chosen.exists():
                problems.append(f"{role}: {chosen.relative_to(root).as_posix()} is a broken link (annexed content "
                                "not fetched?)")
            found[role] = chosen
            claimed.add(chosen)
            break
    return found, problems


def read_participants(path: Path, id_column: str = "participant_id") -> tuple[list[str], Table]:
    """The table's columns and its rows by participant id (a list, so that a repeated id is seen, not overwritten).

    Tab-separated, CRLF or LF (SOOP's is CRLF), with a byte-order mark or not; quoted cells are unquoted (SOOP
    quotes the etiologies that hold commas). A missing id column is an error: no row could be matched to a folder.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the participants table: {exc}") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DatasetError(f"{path}: empty, no header row")
    header = [cell.strip() for cell in rows[0]]
    if id_column not in header:
        raise DatasetError(f"{path}: no {id_column} column (columns: {', '.join(header)})")
    id_at = header.index(id_column)
    table: Table = {}
    for cells in rows[1:]:
        if not any(cell.strip() for cell in cells) or len(cells) <= id_at:
            continue
        row = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
        if len(cells) != len(header):
            row["__cells__"] = f"{len(cells)} cells for {len(header)} columns"
        table.setdefault(row[id_column], []).append(row)
    return header, table


def _cell(row: Mapping[str, str], header: Iterable[str], accepted: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(column, value) of the first accepted column the table has (case-insensitive); value None when absent."""
    by_lower = {name.lower(): name for name in header}
    for name in accepted:
        column = by_lower.get(name.lower())
        if column is not None:
            value = row.get(column)
            return column, None if value is None or value.lower() in MISSING_VALUES else value
    return None, None


def _number(field_name: str, text: str, problems: list[str]) -> float | None:
    if not NUMBER.fullmatch(text) or not math.isfinite(float(text)):
        problems.append(f"{field_name} {text!r} is not a number")
        return None
    return float(text)


def _integer(field_name: str, text: str, low: int, high: int, problems: list[str]) -> int | None:
    value = _number(field_name, text, problems)
    if value is None:
        return None
    if not value.is_integer():
        problems.append(f"{field_name} {text!r} is not an integer")
        return None
    if not low <= value <= high:
        problems.append(f"{field_name} {text!r} is outside {low}-{high}")
        return None
    return int(value)


def parse_clinical(row: Mapping[str, str], header: Iterable[str], layout: DatasetLayout) -> tuple[Clinical, list[str]]:
    """The clinical fields of one table row and what could not be read (the field stays None then)."""
    header = list(header)
    problems: list[str] = []
    _, nihss_text = _cell(row, header, layout.columns("nihss"))
    nihss = None if nihss_text is None else _integer("nihss", nihss_text, NIHSS_MIN, NIHSS_MAX, problems)
    _, age_text = _cell(row, header, layout.columns("age"))
    age = None
    if age_text is not None:
        # SOOP writes ages above its clamp as "89+": the clamp is the value the dataset gives.
        age = _number("age", age_text.removesuffix("+"), problems)
        if age is not None and not 0 <= age <= AGE_MAX:
            problems.append(f"age {age_text!r} is outside 0-{AGE_MAX:g}")
            age = None
    _, side_text = _cell(row, header, layout.columns("side"))
    side = None
    if side_text is not None and side_text.lower() not in NOT_A_SIDE:
        side = SIDE_ALIASES.get(side_text.lower())
        if side is None:
            problems.append(f"side {side_text!r} is not left, right or bilateral")
    _, cps_text = _cell(row, header, layout.columns("cps_grade"))
    cps = None if cps_text is None else _integer("cps_grade", cps_text, min(CPS_LABELS), max(CPS_LABELS), problems)
    _, defuse_text = _cell(row, header, layout.columns("defuse3"))
    defuse3 = None
    if defuse_text is not None:
        defuse3 = BOOLEANS.get(defuse_text.lower())
        if defuse3 is None:
            problems.append(f"defuse3 {defuse_text!r} is not yes/no (1/0, true/false)")
    return Clinical(nihss=nihss, age=age, side=side, cps_grade=cps, defuse3=defuse3), problems


def _score(root: Path, layout: DatasetLayout, folders: list[Path]) -> int:
    """How many images the layout finds among the first few subjects: the detector's evidence."""
    return sum(found is not None for folder in folders[:DETECT_SUBJECTS]
               for found in _resolve(root, layout, _label(folder))[0].values())


def detect_layout(root: Path | str) -> DatasetLayout:
    """With ``sub-*`` folders the layout that finds the most images (SOOP, ISLES'22, generic BIDS first on a tie),
    else DICOM studies when a folder holds DICOM files, else :class:`DatasetError`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    folders = _subject_folders(root, GENERIC_BIDS)
    if folders:
        # The generic layout competes too (a BIDS dataset with sessions half-fits ISLES'22); a tie goes to the
        # built-in layout, which knows its dataset's exact names.
        candidates = (*BUILTIN_LAYOUTS, GENERIC_BIDS)
        best, at = max((_score(root, layout, folders), -i) for i, layout in enumerate(candidates))
        return candidates[-at] if best else GENERIC_BIDS  # nothing found anywhere: list the subjects as BIDS
    if any(is_dicom_study(folder) for folder in _subject_folders(root, DICOM_STUDIES)):
        return DICOM_STUDIES
    raise DatasetError(f"{root}: no subjects (no sub-* folder and no folder holding DICOM files)")


def _files_of(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from _probe_files(path)
    else:
        yield path


def _digest(root: Path, subjects: Iterable[Subject], extra: Iterable[Path]) -> str:
    """sha256 over "relative path, tab, size" lines of every used file in sorted order: cheap (no file is read),
    yet any added, removed, renamed or rewritten-to-another-size file changes it."""
    used: set[Path] = set(extra)
    for s in subjects:
        for value in vars(s.paths).values():
            if value is not None:
                used.update(_files_of(value))
    lines = []
    for path in used:
        size = path.stat().st_size if path.exists() else -1  # -1: a broken link
        lines.append(f"{path.relative_to(root).as_posix()}\t{size}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def _clinical_for(folder: Path, table: Table | None, header: list[str],
                  layout: DatasetLayout, table_path: Path) -> tuple[Clinical, list[str], str | None]:
    """(clinical, problems, the table's id used) for one subject folder; no table: all None, no problem."""
    if table is None:
        return Clinical(), [], None
    for key in (folder.name, _label(folder)):  # BIDS ids carry sub-; some tables leave it off
        rows = table.get(key)
        if rows:
            clinical, problems = parse_clinical(rows[0], header, layout)
            if len(rows) > 1:
                problems.insert(0, f"{table_path.name} lists {key} {len(rows)} times; used the first row")
            if "__cells__" in rows[0]:
                problems.insert(0, f"{table_path.name} row of {key} has {rows[0]['__cells__']}")
            return clinical, problems, key
    return Clinical(), [f"not in {table_path.name}"], None


def read_dataset(root: Path | str, layout: DatasetLayout | None = None) -> Dataset:
    """Every subject of a dataset with its images, clinical fields, what is missing and what could not be read.

    ``layout`` None guesses it (:func:`detect_layout`). Subjects are the layout's subject folders in natural order;
    participants-table rows with no folder are counted in ``unmatched_participants`` rather than invented.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    layout = layout or detect_layout(root)
    folders = _subject_folders(root, layout)
    if not folders:
        raise DatasetError(f"{root}: no subjects (no {layout.subject_folders} folder for the {layout.name} layout)")
    table_path = root / layout.participants
    table: Table | None = None
    header: list[str] = []
    if table_path.is_file():
        header, table = read_participants(table_path, layout.participant_id)
    used_ids: set[str] = set()
    subjects = []
    for folder in folders:
        problems: list[str] = []
        if layout.dicom_studies:
            study = folder if is_dicom_study(folder) else None
            if study is None:
                problems.append(f"no DICOM file among the first {DICOM_PROBE_FILES} files")
            paths = SubjectPaths(dicom_study=study)
            missing = [] if study else ["dicom_study"]
        else:
            found, problems = _resolve(root, layout, _label(folder))
            paths = SubjectPaths(**found)
            missing = [role for role in ROLES if layout.patterns(role) and found[role] is None]
        clinical, clinical_problems, used = _clinical_for(folder, table, header, layout, table_path)
        if used is not None:
            used_ids.add(used)
        missing += [name for name in CLINICAL_FIELDS if getattr(clinical, name) is None]
        subjects.append(Subject(id=folder.name, paths=paths, clinical=clinical, missing=tuple(missing),
                                problems=tuple(problems + clinical_problems)))
    unmatched = tuple(sorted((set(table) - used_ids) if table else (), key=natural_key))
    extra = [table_path] if table is not None else []
    return Dataset(root=root, layout=layout.name, subjects=tuple(subjects),
                   file_digest=_digest(root, subjects, extra), unmatched_participants=unmatched)

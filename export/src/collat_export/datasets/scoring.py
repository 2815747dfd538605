"""One served subject scored against its dataset's references, and the cohort's figures from those rows.

References come from the dataset: the diffusion lesion (core) and hypoperfusion masks, a Tmax map (> 6 s, united
with the reference core, is the reference hypoperfusion lesion where no mask is given, as DEFUSE 3 defines it),
the five phase maps, and the participants table's CPS grade and DEFUSE 3 decision. Where the table has no decision,
the reference decision is the served criteria applied to the reference volumes (and the DAWN groups to the table's
age and NIHSS with the reference core), so that a dataset of masks alone still measures the decisions. A reference
on another grid is resampled onto the served output's grid (nearest neighbour for masks, linear for maps), through
both affines. Anything without its reference is counted and left unscored, never scored against nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from collat_client.imaging.evaluation import dice, phase_metrics
from collat_contract.names import PHASE_NAMES
from collat_ensemble.clinical import dawn_eligibility, defuse3_target_mismatch, mismatch, volume_ml
from collat_ensemble.phantom.physiology import TMAX_THRESHOLD_S

from ..statistics import binary_agreement, bland_altman, grade_agreement, lins_ccc
from .bids import Subject
from .served import Outcome

AFFINE_TOLERANCE_MM = 1e-3
MAP_METRICS = ("r2", "ssim", "tanimoto", "mae")
REFERENCE_KEYS = ("reference_core_ml", "reference_hypoperfusion_ml", "reference_defuse3", "reference_dawn",
                  "reference_cps", "maps_r2_mean")
WORST_CASES = 4


class ReferenceImageError(ValueError):
    """A reference image cannot be read or does not fit the subject's scan; the message names the file."""


def _load(path: Path):
    import nibabel as nib

    try:
        image = nib.load(str(path))
        return np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for a bad file
        raise ReferenceImageError(f"{path}: cannot read as NIfTI: {exc}") from None


def on_grid(data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray,
            order: int) -> np.ndarray:
    """``data`` resampled onto the target grid through both affines (unchanged when the grids agree)."""
    if data.shape[:3] == tuple(shape[:3]) and np.allclose(affine, target_affine, atol=AFFINE_TOLERANCE_MM):
        return data
    from scipy.ndimage import affine_transform

    to_source = np.linalg.inv(affine) @ target_affine
    volumes = data[..., None] if data.ndim == 3 else data
    out = np.stack([affine_transform(volumes[..., k].astype(np.float32), to_source[:3, :3], to_source[:3, 3],
                                     output_shape=tuple(shape[:3]), order=order, mode="constant", cval=0.0)
                    for k in range(volumes.shape[-1])], axis=-1)
    return out[..., 0] if data.ndim == 3 else out


def _mask(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    data, ref_affine = _load(path)
    data = np.squeeze(data)
    if data.ndim != 3:
        raise ReferenceImageError(f"{path}: a mask must be 3D, this one is {data.ndim}D {data.shape}")
    return on_grid(data > 0, ref_affine, shape, affine, order=0) > 0.5


def reference_masks(subject: Subject, shape: tuple[int, ...], affine: np.ndarray,
                    ) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(reference core, reference hypoperfusion lesion, where the lesion came from) on the given grid; None where
    the dataset has none. The lesion is the mask, else Tmax > 6 s united with the reference core."""
    p = subject.paths
    core = _mask(p.core_mask, shape, affine) if p.core_mask else None
    if p.lesion_mask:
        return core, _mask(p.lesion_mask, shape, affine), "mask"
    if p.tmax:
        tmax, tmax_affine = _load(p.tmax)
        tmax = on_grid(np.squeeze(tmax).astype(np.float32), tmax_affine, shape, affine, order=1)
        lesion = tmax > TMAX_THRESHOLD_S
        return core, lesion if core is None else lesion | core, f"Tmax > {TMAX_THRESHOLD_S:g} s"
    return core, None, ""


def reference_maps_on(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """The five reference phase maps (x, y, z, 5) on the given grid (linear interpolation when they differ)."""
    if path.is_dir():
        raise ReferenceImageError(f"{path}: reference maps must be one 4D image of the {len(PHASE_NAMES)} phases")
    ref, ref_affine = _load(path)
    if ref.ndim != 4 or ref.shape[-1] != len(PHASE_NAMES):
        raise ReferenceImageError(f"{path}: reference maps must be (x, y, z, {len(PHASE_NAMES)}), not {ref.shape}")
    return on_grid(ref.astype(np.float32), ref_affine, shape, affine, order=1)


def _served(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = folder / f"{name}.nii.gz"
    return _load(path) if path.is_file() else None


def _diffusion_scores(subject: Subject, folder: Path, metrics: dict, row: dict[str, Any]) -> None:
    hypo = metrics.get("hypoperfusion")
    served_core = _served(folder, "core_mask")
    if hypo is None or served_core is None:
        return
    core, affine = served_core[0] > 0, served_core[1]
    withheld = hypo.get("lesion_withheld")
    row.update(core_ml=hypo["core_ml"], hypoperfusion_ml=hypo["hypoperfusion_ml"],
               lesion_withheld="; ".join(withheld["reasons"]) if withheld else "",
               defuse3=None if hypo["defuse3"] is None else hypo["defuse3"]["eligible"],
               dawn=None if hypo["dawn"] is None else hypo["dawn"]["eligible"])
    ref_core, ref_lesion, source = reference_masks(subject, core.shape, affine)
    # Dice is scored where the reference has a lesion; against an empty one it says nothing (1.0 when the served
    # mask is empty too), so those subjects count by their volumes and decisions only.
    if ref_core is not None:
        row["reference_core_ml"] = round(volume_ml(ref_core, affine), 3)
        if ref_core.any():
            row["core_dice"] = dice(core, ref_core)
    if ref_lesion is not None:
        row.update(reference_hypoperfusion_ml=round(volume_ml(ref_lesion, affine), 3),
                   reference_lesion_source=source)
        served_lesion = _served(folder, "lesion_mask")
        if not withheld and served_lesion is not None and ref_lesion.any():
            row["lesion_dice"] = dice(served_lesion[0] > 0, ref_lesion)
    c = subject.clinical
    if c.defuse3 is not None:
        row.update(reference_defuse3=c.defuse3, reference_defuse3_source="table")
    elif ref_core is not None and ref_lesion is not None:
        core_ml, lesion_ml = row["reference_core_ml"], row["reference_hypoperfusion_ml"]
        row.update(reference_defuse3=defuse3_target_mismatch(core_ml, mismatch(lesion_ml, core_ml)).eligible,
                   reference_defuse3_source="reference masks")
    if ref_core is not None and c.age is not None and c.nihss is not None:
        row["reference_dawn"] = dawn_eligibility(c.age, c.nihss, row["reference_core_ml"]).eligible


def _map_scores(subject: Subject, folder: Path, metrics: dict, row: dict[str, Any]) -> None:
    collateral = metrics.get("collateral")
    if collateral is None:
        return
    row["cps"] = collateral["cps_estimate"]
    if subject.clinical.cps_grade is not None:
        row["reference_cps"] = subject.clinical.cps_grade
    maps, brain = _served(folder, "collateral_maps"), _served(folder, "brain_mask")
    if subject.paths.reference_maps is None or maps is None or brain is None:
        return
    ref = reference_maps_on(subject.paths.reference_maps, maps[0].shape, maps[1])
    table = phase_metrics(maps[0].astype(np.float32), ref, brain[0] > 0)
    for phase in (*PHASE_NAMES, "mean"):
        for metric in MAP_METRICS:
            row[f"maps_{metric}_{phase}"] = table[phase][metric]


def score_subject(subject: Subject, folder: Path, outcome: Outcome) -> dict[str, Any]:
    """One CSV row: the served figures, the reference's, and their agreement (absent keys: not available)."""
    row: dict[str, Any] = {"subject": subject.id, "status": outcome.status, "reason": outcome.reason,
                           "pipeline": outcome.pipeline or "", "seconds": outcome.seconds}
    if outcome.status != "done":
        return row
    metrics = json.loads((folder / "metrics.json").read_text())
    try:
        _diffusion_scores(subject, folder, metrics, row)
        _map_scores(subject, folder, metrics, row)
    except ReferenceImageError as exc:
        row["reference_problem"] = str(exc)
    return row


def _values(rows: list[dict], *keys: str) -> list[tuple]:
    """The rows' values of ``keys``, from rows where none is missing or None."""
    return [tuple(r[k] for k in keys) for r in rows if all(r.get(k) is not None for k in keys)]


def _dice_figures(rows: list[dict], key: str, reference: str) -> dict[str, Any]:
    values = [v for (v,) in _values(rows, key)]
    empty = sum(1 for r in rows if r.get(reference) == 0.0)
    return {"scored": len(values), "median": float(np.median(values)) if values else None,
            "mean": float(np.mean(values)) if values else None, "empty_reference": empty}


def _volume_figures(rows: list[dict], served: str, reference: str) -> dict[str, Any]:
    pairs = _values(rows, served, reference)
    est, ref = [a for a, _ in pairs], [b for _, b in pairs]
    return {"pairs": len(pairs), "lins_ccc": lins_ccc(est, ref), "bland_altman": bland_altman(est, ref),
            "mean_absolute_difference_ml": float(np.mean(np.abs(np.subtract(est, ref)))) if pairs else None}


def _decision_figures(rows: list[dict], served: str, reference: str) -> dict[str, Any]:
    with_reference = [r for r in rows if r.get(reference) is not None]
    pairs = _values(with_reference, served, reference)
    figures = binary_agreement([a for a, _ in pairs], [b for _, b in pairs])
    figures["withheld"] = len(with_reference) - len(pairs)  # a reference but no served decision (a failed check)
    figures["without_reference"] = sum(1 for r in rows if r.get("status") == "done" and r.get(reference) is None)
    return figures


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The cohort's figures: counts, Dice, volume agreement, decisions, grades, maps, and the worst cases."""
    done = [r for r in rows if r["status"] == "done"]
    summary: dict[str, Any] = {
        "subjects": len(rows), "done": len(done),
        "failed": [{"subject": r["subject"], "reason": r["reason"]} for r in rows if r["status"] == "failed"],
        "skipped": [{"subject": r["subject"], "reason": r["reason"]} for r in rows if r["status"] == "skipped"],
        "reference_problems": [{"subject": r["subject"], "problem": r["reference_problem"]}
                               for r in rows if r.get("reference_problem")],
        "lesion_withheld": sum(1 for r in done if r.get("lesion_withheld")),
        # Analysed but with nothing to score against (a DICOM study, a dataset without masks or labels): listed.
        "no_reference": [r["subject"] for r in done if not any(r.get(k) is not None for k in REFERENCE_KEYS)],
        "core_dice": _dice_figures(done, "core_dice", "reference_core_ml"),
        "lesion_dice": _dice_figures(done, "lesion_dice", "reference_hypoperfusion_ml"),
        "core_volume": _volume_figures(done, "core_ml", "reference_core_ml"),
        "hypoperfusion_volume": _volume_figures(done, "hypoperfusion_ml", "reference_hypoperfusion_ml"),
        "defuse3": _decision_figures(done, "defuse3", "reference_defuse3"),
        "dawn": _decision_figures(done, "dawn", "reference_dawn"),
    }
    grades = _values(done, "cps", "reference_cps")
    summary["cps"] = grade_agreement([a for a, _ in grades], [b for _, b in grades])
    summary["cps"]["withheld"] = sum(1 for r in done if r.get("reference_cps") is not None and r.get("cps") is None)
    maps: dict[str, dict[str, float | None]] = {}
    for phase in (*PHASE_NAMES, "mean"):
        maps[phase] = {}
        for metric in MAP_METRICS:
            values = [v for (v,) in _values(done, f"maps_{metric}_{phase}") if not math.isnan(v)]
            maps[phase][metric] = float(np.mean(values)) if values else None
    summary["maps"] = {"scored": len(_values(done, "maps_r2_mean")), "by_phase": maps}
    scored = [r for r in done if r.get("lesion_dice") is not None or r.get("core_dice") is not None]
    scored.sort(key=lambda r: min(r.get(k) if r.get(k) is not None else 1.0 for k in ("lesion_dice", "core_dice")))
    summary["worst"] = [r["subject"] for r in scored[:WORST_CASES]]
    return summary

"""A labelled dataset's subjects as training samples, prepared exactly as the server prepares scans, split by
subject, and the held-out (test) subjects' figures for the model card.

The split is by subject and by a hash of the subject's id with a seed, so adding subjects to a dataset moves none
of the old ones between train, validation and test (:func:`split_subjects`). The U-Net's target is the reference
hypoperfusion lesion (a mask, or Tmax > 6 s with the core); 3D-MROD-Net's the reference phase maps. A subject
without what its network needs is listed with the reason and left out, never silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from collat_client import CollatError
from collat_client.imaging.evaluation import dice, phase_metrics
from collat_client.sdk.inputs import read_diffusion, read_perfusion
from collat_contract.names import PHASE_NAMES
from collat_ensemble.clinical import defuse3_target_mismatch, mismatch, volume_ml
from collat_ensemble.contrast import DSC_CONVERSION
from collat_ensemble.errors import InputValidationError
from collat_ensemble.geometry import reorient_to_ras
from collat_ensemble.hypoperfusion import assess_on_scan
from collat_ensemble.preprocess import mask_phase_maps, prepare_diffusion, prepare_perfusion, volume_to_network_grid

from ..presets import Preset
from ..training.data import HypoSample, MRODSample, label_on_network_grid
from ..training.evaluate import predict_lesion, predict_maps
from .bids import Dataset, Subject, natural_key
from .scoring import ReferenceImageError, reference_maps_on, reference_masks

SPLIT = (0.8, 0.1, 0.1)  # train, validation, test
READ_ERRORS = (CollatError, ReferenceImageError, InputValidationError, ValueError, OSError)


def _hash_fraction(subject_id: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}:{subject_id}".encode()).hexdigest()[:12], 16) / float(16 ** 12)


def split_subjects(ids: Sequence[str], fractions: tuple[float, float, float] = SPLIT,
                   seed: int = 0) -> dict[str, list[str]]:
    """Subjects into train, validation and test by a seeded hash of each id: a subject's part depends on its id
    alone, so adding subjects to a dataset moves none of the old ones. A small dataset still gets one validation
    subject once it has two and one test subject once it has three (the train subjects with the lowest hashes)."""
    _, f_val, f_test = fractions
    parts: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for i in ids:
        h = _hash_fraction(i, seed)
        parts["validation" if h < f_val else "test" if h < f_val + f_test else "train"].append(i)
    for part, at_least in (("validation", 2), ("test", 3)):
        if not parts[part] and len(ids) >= at_least and len(parts["train"]) > 1 and fractions[
                1 if part == "validation" else 2] > 0:
            moved = min(parts["train"], key=lambda i: _hash_fraction(i, seed))
            parts["train"].remove(moved)
            parts[part].append(moved)
    return {k: sorted(v, key=natural_key) for k, v in parts.items()}


def _side(subject: Subject) -> str:
    return subject.clinical.side or "unknown"


def _diffusion(subject: Subject):
    """(DWI, ADC, prepared) read and prepared as the SDK and the server do, or the reason it cannot be."""
    p, c = subject.paths, subject.clinical
    if p.dwi is None or p.adc is None:
        return "no DWI with its ADC"
    if c.nihss is None:
        return "no NIHSS: the U-Net reads it"
    dwi, adc = read_diffusion(p.dwi, "dwi", allow_b_value=True), read_diffusion(p.adc, "adc")
    prep = prepare_diffusion(dwi.data, adc.data, dwi.affine, nihss=c.nihss, side=_side(subject),
                             adc_affine=adc.affine)
    if prep.side == "unknown":
        return "no side given and no ADC core to infer it from"
    return dwi, adc, prep


def hypo_subject_sample(subject: Subject) -> HypoSample | str:
    """The U-Net's sample of one subject, or why there is none."""
    try:
        read = _diffusion(subject)
        if isinstance(read, str):
            return read
        dwi, _, prep = read
        _, lesion, _ = reference_masks(subject, dwi.data.shape, dwi.affine)
    except READ_ERRORS as exc:
        return str(exc).splitlines()[0]
    if lesion is None:
        return "no reference hypoperfusion lesion (a lesion mask or a Tmax map): the U-Net's target"
    return HypoSample(prep.volume.astype(np.float16), label_on_network_grid(lesion, dwi.affine, prep),
                      prep.nihss_scaled, float(prep.core.sum()) * prep.grid.voxel_ml, volume_ml(lesion, dwi.affine))


def mrod_subject_sample(subject: Subject, preset: Preset, dsc_conversion: str = DSC_CONVERSION) -> MRODSample | str:
    """3D-MROD-Net's sample of one subject (loss inside the series' own brain mask), or why there is none."""
    p = subject.paths
    if p.perfusion is None or p.reference_maps is None:
        return "no perfusion series with reference phase maps"
    g = preset.geometry
    try:
        series = read_perfusion(p.perfusion)
        prep = prepare_perfusion(series.data, series.affine, float(series.frame_seconds), frames=g.channels,
                                 frame_interval=g.frame_seconds, slices=g.slices, height=g.height, width=g.width,
                                 register=False, dsc_conversion=dsc_conversion)
        maps = reference_maps_on(p.reference_maps, series.data.shape[:3], series.affine)
    except READ_ERRORS as exc:
        return str(exc).splitlines()[0]
    target = volume_to_network_grid(maps, series.affine, prep.grid)
    mask = prep.mask.astype(bool)
    return MRODSample(prep.network_input.astype(np.float16), target.astype(np.float16), mask, mask, prep.grid)


def build_subject_samples(model: str, subjects: Sequence[Subject], preset: Preset,
                          progress: Callable[[str], None] = lambda _: None,
                          ) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """([(subject id, sample)], [{"subject", "reason"}]) in the subjects' order."""
    samples, unusable = [], []
    for i, subject in enumerate(subjects, 1):
        sample = hypo_subject_sample(subject) if model == "hypo" else mrod_subject_sample(subject, preset)
        if isinstance(sample, str):
            unusable.append({"subject": subject.id, "reason": sample})
            progress(f"  [{i}/{len(subjects)}] {subject.id}: left out: {sample}")
        else:
            samples.append((subject.id, sample))
            progress(f"  [{i}/{len(subjects)}] {subject.id}: prepared")
    return samples, unusable


def dataset_record(dataset: Dataset, split: dict[str, list[str]], unusable: list[dict[str, str]],
                   seed: int) -> dict[str, Any]:
    """What a model card says about the data: name and version (BIDS ``dataset_description.json`` where there is
    one), subject counts, the file-list digest, the split and who was left out with why."""
    description: dict[str, Any] = {}
    path = dataset.root / "dataset_description.json"
    if path.is_file():
        try:
            description = json.loads(path.read_text())
        except ValueError:
            description = {}
    return {"name": description.get("Name") or dataset.root.name,
            "version": description.get("DatasetVersion") or description.get("DatasetDOI") or "unversioned",
            "root": str(dataset.root), "layout": dataset.layout, "subjects": len(dataset.subjects),
            "file_digest": dataset.file_digest, "split_seed": seed, "split": split, "left_out": unusable}


def evaluate_hypo_subjects(net: torch.nn.Module, subjects: Sequence[Subject]) -> dict[str, Any]:
    """The U-Net (PyTorch, the served preparation) on held-out subjects, counted on each scan's grid: Dice and
    volume error of the lesion against the reference, and DEFUSE 3 against the reference decision."""
    net.eval()
    rows = []
    for subject in subjects:
        try:
            read = _diffusion(subject)
            if isinstance(read, str):
                continue
            dwi, _, prep = read
            core, lesion, _ = reference_masks(subject, dwi.data.shape, dwi.affine)
        except READ_ERRORS:
            continue
        if lesion is None:
            continue
        _, found = assess_on_scan(predict_lesion(net, prep.slabs, prep.nihss), prep.core, prep.brain, prep.grid,
                                  nihss=subject.clinical.nihss, age=subject.clinical.age)
        reference = np.asarray(reorient_to_ras(lesion, dwi.affine)[0]) > 0.5
        reference_ml = float(reference.sum()) * prep.grid.voxel_ml
        ref_core_ml = found.core_ml if core is None else float(core.sum()) * prep.grid.voxel_ml
        ref_decision = subject.clinical.defuse3 if subject.clinical.defuse3 is not None else \
            defuse3_target_mismatch(ref_core_ml, mismatch(reference_ml, ref_core_ml)).eligible
        rows.append({"subject": subject.id, "dice": dice(found.lesion, reference),
                     "volume_error_ml": found.hypoperfusion_ml - reference_ml,
                     "defuse3_agrees": found.defuse3.eligible == ref_decision})
    if not rows:
        return {"subjects": 0}
    return {"subjects": len(rows), "median_dice": float(np.median([r["dice"] for r in rows])),
            "mean_abs_volume_error_ml": float(np.mean([abs(r["volume_error_ml"]) for r in rows])),
            "defuse3_accuracy": float(np.mean([r["defuse3_agrees"] for r in rows])), "rows": rows}


def evaluate_mrod_subjects(net: torch.nn.Module, subjects: Sequence[Subject], preset: Preset) -> dict[str, Any]:
    """3D-MROD-Net on held-out subjects: maps R^2, SSIM, Tanimoto and MAE per phase on the network grid, inside
    each series' brain mask."""
    net.eval()
    tables = []
    for subject in subjects:
        sample = mrod_subject_sample(subject, preset)
        if isinstance(sample, str):
            continue
        maps = mask_phase_maps(predict_maps(net, sample.x), sample.input_mask)
        to_xyz = (3, 2, 1, 0)
        tables.append(phase_metrics(np.transpose(maps, to_xyz), np.transpose(sample.target.astype(np.float32), to_xyz),
                                    np.transpose(sample.input_mask, (2, 1, 0))))
    if not tables:
        return {"subjects": 0}
    return {"subjects": len(tables), **{f"mean_{m}": float(np.mean([t["mean"][m] for t in tables]))
                                        for m in ("r2", "ssim", "tanimoto", "mae")},
            **{f"{p}_r2": float(np.mean([t[p]["r2"] for t in tables])) for p in PHASE_NAMES}}


def read_subjects(dataset: Dataset, ids: Sequence[str]) -> list[Subject]:
    by_id = {s.id: s for s in dataset.subjects}
    return [by_id[i] for i in ids]



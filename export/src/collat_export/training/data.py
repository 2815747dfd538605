"""Phantom cases turned into network samples, exactly as the server will prepare real scans.

Training seeds start at 1,000,000; evaluation seeds lie below it, so held-out sets are
disjoint from training by construction. Samples are stored as float16 to keep a few
hundred cases in memory on a 24 GiB machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from collat_ensemble.contrast import DSC_CONVERSION
from collat_ensemble.geometry import reorient_to_ras, resample
from collat_ensemble.phantom import EVALUATION_SEED_LIMIT, PhantomCase, draw_kind, generate_case, turn_in_plane
from collat_ensemble.phantom.case import PHANTOM_VERSION
from collat_ensemble.preprocess import (
    MNI_2MM_AFFINE,
    MNI_2MM_SHAPE,
    PerfusionGrid,
    PreparedDiffusion,
    pad_inplane,
    prepare_diffusion,
    prepare_perfusion,
    volume_to_network_grid,
)

from ..presets import Preset

TRAINING_SEED_BASE = EVALUATION_SEED_LIMIT


@dataclass
class MRODSample:
    x: np.ndarray  # [T, D, H, W] float16
    target: np.ndarray  # [5, D, H, W] float16 in [-1, 1]
    mask: np.ndarray  # [D, H, W] bool: the phantom's brain (where the loss and the metrics look)
    input_mask: np.ndarray  # [D, H, W] bool: the brain mask preprocessing derives from the series
    grid: PerfusionGrid | None = None  # how the maps go back onto the input grid (evaluation scores them there)


@dataclass
class HypoSample:
    volume: np.ndarray  # [4, 60, 128, 128] float16: the four channels, whole brain
    lesion: np.ndarray  # [60, 128, 128] bool
    nihss: float  # NIHSS / 21
    core_ml: float = float("nan")  # the case's true core and lesion: the weights' training domain is made of them
    lesion_ml: float = float("nan")


def mrod_sample(case: PhantomCase, preset: Preset, register: bool = True,
                dsc_conversion: str = DSC_CONVERSION) -> MRODSample:
    """``dsc_conversion``: the current version for training; the evaluated weights' own for an evaluation."""
    g = preset.geometry
    prep = prepare_perfusion(case.perfusion, case.perfusion_affine, case.frame_seconds, frames=g.channels,
                             frame_interval=g.frame_seconds, slices=g.slices, height=g.height, width=g.width,
                             register=register, dsc_conversion=dsc_conversion)
    target = volume_to_network_grid(case.reference_maps, case.perfusion_affine, prep.grid)
    mask = volume_to_network_grid(case.brain_mask.astype(np.float32), case.perfusion_affine, prep.grid) > 0.5
    return MRODSample(prep.network_input.astype(np.float16), target.astype(np.float16), mask, prep.mask.astype(bool),
                      prep.grid)


def hypo_sample(case: PhantomCase) -> HypoSample:
    """The served preparation; the label is the true lesion placed on the MNI grid by the same registration the
    image went through (identity for an MNI-space case), so the network learns what it will be shown."""
    prep = prepare_diffusion(case.dwi, case.adc, case.diffusion_affine, nihss=case.nihss, side=clinical_side(case))
    return HypoSample(prep.volume.astype(np.float16), label_on_network_grid(case.lesion, case.diffusion_affine, prep),
                      prep.nihss_scaled, float(case.truth["core_ml"]), float(case.truth["hypoperfusion_ml"]))


def label_on_mni(label: np.ndarray, affine: np.ndarray, prep: PreparedDiffusion) -> np.ndarray:
    """A mask on the scan's grid placed on the MNI 2 mm grid, (x, y, z), by the registration the image went through
    (the served preparation's): what a perfect U-Net would answer."""
    truth = np.asarray(reorient_to_ras(np.asarray(label, dtype=np.float32), affine)[0])
    return resample(truth, prep.grid.mni_affine, MNI_2MM_AFFINE, MNI_2MM_SHAPE) >= 0.5


def label_on_network_grid(label: np.ndarray, affine: np.ndarray, prep: PreparedDiffusion) -> np.ndarray:
    """:func:`label_on_mni` on the U-Net's [60, 128, 128] grid, so the network learns what it will be shown."""
    return np.transpose(pad_inplane(label_on_mni(label, affine, prep)), (2, 1, 0))


def clinical_side(case: PhantomCase) -> str:
    """The side a clinician sends with the request: the symptoms' side, which a mimic has too (phantom version 4's
    ``clinical_side``; the stroke's side before it)."""
    return str(case.truth.get("clinical_side") or case.stroke.side)


def case_kind(seed: int, kinds: str) -> str:
    """``mixed``: phantom version 4's mix of what hospitals scan (``draw_kind``); otherwise that one kind."""
    return draw_kind(seed) if kinds == "mixed" else kinds


def case_space(seed: int, space: str) -> str:
    """``mixed``: every other training case in a native pose."""
    return ("native" if seed % 2 else "mni") if space == "mixed" else space


def case_modality(seed: int, modality: str) -> str:
    """``mixed``: every other case DSC."""
    return ("dsc" if seed % 2 else "dce") if modality == "mixed" else modality


MAX_TURN_DEG = 15.0


def turned(case: PhantomCase, seed: int) -> PhantomCase:
    """The case with the head turned in-plane by a seeded angle within +-15 degrees, series and truth alike: the
    phantom's perfusion series always lies in the template's pose, patients do not."""
    degrees = float(np.random.default_rng(seed + 31_337).uniform(-MAX_TURN_DEG, MAX_TURN_DEG))
    series, _ = turn_in_plane(case.perfusion.astype(np.float32), case.perfusion_affine, degrees)
    maps, _ = turn_in_plane(case.reference_maps, case.perfusion_affine, degrees)
    mask, _ = turn_in_plane(case.brain_mask.astype(np.float32), case.perfusion_affine, degrees)
    return replace(case, perfusion=np.round(series).astype(case.perfusion.dtype), reference_maps=maps,
                   brain_mask=mask >= 0.5)


def case_turned(seed: int, pose: str) -> bool:
    """``mixed``: two cases in three turned in-plane."""
    return pose == "mixed" and seed % 3 != 0


def case_motion(seed: int, motion: str) -> bool:
    """``mixed``: half the cases move (seeds 2 and 3 of every 4, so that both modalities do)."""
    return motion == "mixed" and seed % 4 >= 2


def _build(args: tuple[int, str, Preset | None, str, str, str, str, str]) -> MRODSample | HypoSample:
    seed, model, preset, space, modality, motion, pose, kinds = args
    if model == "hypo":
        return hypo_sample(generate_case(seed, space=case_space(seed, space), kind=case_kind(seed, kinds)))
    case = generate_case(seed, modality=case_modality(seed, modality), motion=case_motion(seed, motion))  # type: ignore[arg-type]
    return mrod_sample(turned(case, seed) if case_turned(seed, pose) else case, preset,  # type: ignore[arg-type]
                       register=False)


def _cache_path(cache: Path, job: tuple) -> Path:
    """One file per sample, named by everything that makes it (the phantom's version and, where a series may be
    DSC, the DSC conversion included)."""
    seed, model, preset, space, modality, motion, pose, kinds = job
    conversion = f"-dsc{DSC_CONVERSION}" if model == "mrod" and modality != "dce" else ""
    kinds_part = f"-{kinds}" if model == "hypo" else ""
    options = (f"{model}-{preset.name}-{preset.geometry.slices}x{preset.geometry.height}x{preset.geometry.width}-"
               f"{space}-{modality}-{motion}-{pose}{kinds_part}-v{PHANTOM_VERSION}{conversion}")
    return cache / options / f"{seed}.npz"


def _build_cached(args: tuple[tuple, Path | None]) -> MRODSample | HypoSample:
    job, cache = args
    path = None if cache is None else _cache_path(cache, job)
    if path is not None and path.is_file():
        with np.load(path) as z:
            if job[1] == "hypo":
                return HypoSample(z["volume"], z["lesion"], float(z["nihss"]), float(z["core_ml"]),
                                  float(z["lesion_ml"]))
            return MRODSample(z["x"], z["target"], z["mask"], z["input_mask"])
    sample = _build(job)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {k: v for k, v in vars(sample).items() if k != "grid"}
        tmp = path.with_suffix(".partial.npz")
        np.savez(tmp, **fields)
        tmp.replace(path)
    return sample


def build_samples(model: str, preset: Preset, seeds: list[int], workers: int = 1, space: str = "mni",
                  modality: str = "dce", motion: str = "none", pose: str = "template",
                  cache: Path | None = None, kinds: str = "mca") -> Iterator:
    """Samples in seed order, generated in ``workers`` processes (``space``: mni, native or mixed, hypo only;
    ``modality``: dce, dsc or mixed, ``motion``: none or mixed and ``pose``: template or mixed, mrod only).
    ``cache``: a folder where each sample is kept once made (a full-grid case takes seconds to make and a
    training run or its re-run needs hundreds). ``kinds`` (hypo only): ``mixed`` (phantom version 4's mix of what
    hospitals scan) or one kind."""
    jobs = [((s, model, preset, space, modality, motion, pose, kinds), cache) for s in seeds]
    yield from forked_imap(_build_cached, jobs, workers)


def forked_imap(job: Callable[[Any], Any], jobs: list, workers: int, chunksize: int = 1,
                initializer: Callable[[], None] | None = None) -> Iterator:
    """``job`` over ``jobs`` in order, in ``workers`` forked processes (in this one when 1): a fork shares what the
    parent set up (a network, a template) instead of pickling it per job. ``initializer`` runs once in each worker
    (never in this process)."""
    if workers <= 1:
        yield from map(job, jobs)
        return
    with get_context("fork").Pool(workers, initializer=initializer) as pool:
        yield from pool.imap(job, jobs, chunksize=chunksize)


def training_seeds(cases: int, base: int = TRAINING_SEED_BASE) -> list[int]:
    if base < EVALUATION_SEED_LIMIT:
        raise ValueError(f"training seeds must be >= {EVALUATION_SEED_LIMIT}; lower seeds are for evaluation")
    return list(range(base, base + cases))


def parse_seed_range(text: str) -> list[int]:
    """``FIRST-LAST`` (inclusive) or a single seed."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-", 1))
        else:
            first = last = int(text)
    except ValueError:
        raise ValueError(f"seeds {text!r} are not FIRST-LAST") from None
    if last < first or first < 0:
        raise ValueError(f"seed range {text!r} is empty or negative")
    return list(range(first, last + 1))

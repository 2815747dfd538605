"""Phantom cases turned into network samples, exactly as the server will prepare real scans.

Training seeds start at 1,000,000; evaluation seeds lie below it, so held-out sets are
disjoint from training by construction. Samples are stored as float16 to keep a few
hundred cases in memory on a 24 GiB machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from collat_ensemble.geometry import reorient_to_ras, resample
from collat_ensemble.phantom import EVALUATION_SEED_LIMIT, PhantomCase, generate_case
from collat_ensemble.preprocess import (
    MNI_2MM_AFFINE,
    MNI_2MM_SHAPE,
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


@dataclass
class HypoSample:
    volume: np.ndarray  # [4, 60, 128, 128] float16: the four channels, whole brain
    lesion: np.ndarray  # [60, 128, 128] bool
    nihss: float  # NIHSS / 21


def mrod_sample(case: PhantomCase, preset: Preset) -> MRODSample:
    g = preset.geometry
    prep = prepare_perfusion(case.perfusion, case.perfusion_affine, case.frame_seconds, frames=g.channels,
                             frame_interval=g.frame_seconds, slices=g.slices, height=g.height, width=g.width)
    target = volume_to_network_grid(case.reference_maps, case.perfusion_affine, prep.grid)
    mask = volume_to_network_grid(case.brain_mask.astype(np.float32), case.perfusion_affine, prep.grid) > 0.5
    return MRODSample(prep.network_input.astype(np.float16), target.astype(np.float16), mask, prep.mask.astype(bool))


def hypo_sample(case: PhantomCase) -> HypoSample:
    """The served preparation; the label is the true lesion placed on the MNI grid by the same registration the
    image went through (identity for an MNI-space case), so the network learns what it will be shown."""
    prep = prepare_diffusion(case.dwi, case.adc, case.diffusion_affine, nihss=case.nihss, side=case.stroke.side)
    truth = np.asarray(reorient_to_ras(case.lesion.astype(np.float32), case.diffusion_affine)[0])
    on_mni = resample(truth, prep.grid.mni_affine, MNI_2MM_AFFINE, MNI_2MM_SHAPE)
    lesion = np.transpose(pad_inplane(on_mni), (2, 1, 0)) >= 0.5
    return HypoSample(prep.volume.astype(np.float16), lesion, prep.nihss_scaled)


def case_space(seed: int, space: str) -> str:
    """``mixed``: every other training case in a native pose."""
    return ("native" if seed % 2 else "mni") if space == "mixed" else space


def _build(args: tuple[int, str, Preset | None, str]) -> MRODSample | HypoSample:
    seed, model, preset, space = args
    case = generate_case(seed, space=case_space(seed, space) if model == "hypo" else "mni")
    return mrod_sample(case, preset) if model == "mrod" else hypo_sample(case)  # type: ignore[arg-type]


def build_samples(model: str, preset: Preset, seeds: list[int], workers: int = 1, space: str = "mni") -> Iterator:
    """Samples in seed order, generated in ``workers`` processes (``space``: mni, native or mixed; hypo only)."""
    jobs = [(s, model, preset, space) for s in seeds]
    if workers <= 1:
        yield from map(_build, jobs)
        return
    with get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_build, jobs, chunksize=1)


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

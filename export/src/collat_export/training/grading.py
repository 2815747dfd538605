"""The CPS rule fitted on training phantoms and scored on held-out ones, for the network and the conventional map.

Each case goes the served way, in a native pose (the head turned in-plane by up to 15 degrees,
:func:`.data.turned`): the series is prepared and registered to the MNI template
(``prepare_perfusion``), the network's maps are masked as the server masks them, and both the
network's and the conventional method's (``collat_ensemble.phases``) three CPS phases are put on
the assessment grid of ``collat_ensemble.territory``. What the rule needs from a case is then
small (the territory voxels of the side the maps say is ischaemic, their mirrors), so the fit
tries every ratio on stored arrays without re-running anything.

The fit chooses one ratio per CPS phase on training seeds (>= 1,000,000) by exact agreement
with the phantom's grade, then quadratic-weighted kappa; the held-out report gives exact and
within-one agreement, weighted kappa and the confusion matrix per modality and motion.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from collat_ensemble.clinical import collateral_perfusion_score
from collat_ensemble.contrast import DSC_CONVERSION
from collat_ensemble.phantom import generate_case
from collat_ensemble.phases import PHASE_NAMES, collateral_maps
from collat_ensemble.preprocess import mask_phase_maps, prepare_perfusion
from collat_ensemble.template import default_template
from collat_ensemble.territory import (
    CPS_PHASES,
    brightness,
    darker_fractions,
    infer_side,
    territory_pairs,
    to_assessment_grid,
)

from ..presets import Preset
from ..statistics import grade_agreement, weighted_kappa
from .data import forked_imap, turned
from .evaluate import predict_maps

SOURCES = ("network", "conventional")
RATIO_GRID = tuple(round(r, 3) for r in np.arange(0.05, 0.625, 0.025))
GRADES = 6


@dataclass
class GradingCase:
    """One phantom series reduced to what the rule reads, per map source."""

    seed: int
    modality: str
    motion: bool
    truth: int
    values: dict[str, np.ndarray]  # source -> (n, 3) brightness of the usable territory voxels
    mirrored: dict[str, np.ndarray]  # source -> (n, 3) brightness of their mirrors
    side: dict[str, str]  # source -> the side its maps say is ischaemic
    side_truth: str


def _reduce(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    side = infer_side(values, valid)
    return *territory_pairs(values, valid, side), side


def grading_case(net: torch.nn.Module, preset: Preset, seed: int, modality: str, motion: bool,
                 dsc_conversion: str = DSC_CONVERSION) -> GradingCase:
    """One series in a native pose (the head turned in-plane by a seeded angle up to 15 degrees), graded both ways;
    DSC converted by ``dsc_conversion``, the version the weights were trained on."""
    case = turned(generate_case(seed, modality=modality, motion=motion), seed)  # type: ignore[arg-type]
    g = preset.geometry
    prep = prepare_perfusion(case.perfusion, case.perfusion_affine, case.frame_seconds, frames=g.channels,
                             frame_interval=g.frame_seconds, slices=g.slices, height=g.height, width=g.width,
                             template=default_template(), dsc_conversion=dsc_conversion)
    if prep.registration is None:
        raise ValueError(f"seed {seed}: the perfusion baseline did not register ({prep.registration_problem})")
    to_mni = prep.registration.native_to_mni
    picked = [PHASE_NAMES.index(p) for p in CPS_PHASES]
    served = np.transpose(mask_phase_maps(predict_maps(net, prep.network_input), prep.mask), (3, 2, 1, 0))
    conventional = collateral_maps(case.perfusion.astype(np.float32), modality)  # type: ignore[arg-type]
    sources = {"network": (served[..., picked], np.transpose(prep.mask, (2, 1, 0)), to_mni @ prep.grid.grid_affine),
               "conventional": (conventional.maps[..., picked], conventional.mask, to_mni @ case.perfusion_affine)}
    values, mirrored, side = {}, {}, {}
    for name, (maps, mask, voxel_to_mni) in sources.items():
        on_grid = to_assessment_grid(brightness(maps), voxel_to_mni)
        valid = to_assessment_grid(mask.astype(np.float32), voxel_to_mni) >= 0.5
        values[name], mirrored[name], side[name] = _reduce(on_grid, valid)
    return GradingCase(seed, modality, motion, int(case.truth["collateral_grade"]), values, mirrored, side,
                       case.stroke.side)


_SHARED: dict = {}  # the network and preset, set before the worker processes fork (not pickled per job)


def _job(args: tuple[int, str, bool]) -> GradingCase:
    torch.set_num_threads(1)
    return grading_case(_SHARED["net"], _SHARED["preset"], *args, dsc_conversion=_SHARED["dsc_conversion"])


def collect(net: torch.nn.Module, preset: Preset, seeds: Iterable[int], modalities: tuple[str, ...] = ("dce", "dsc"),
            workers: int = 1, progress: Callable[[str], None] | None = None,
            dsc_conversion: str = DSC_CONVERSION) -> list[GradingCase]:
    """Every seed in every modality; odd seeds move (so both modalities are scored with and without motion)."""
    net.eval()
    _SHARED.update(net=net, preset=preset, dsc_conversion=dsc_conversion)
    jobs = [(s, m, s % 2 == 1) for s in seeds for m in modalities]
    cases: list[GradingCase] = []

    def gather(results: Iterable[GradingCase]) -> None:
        for case in results:
            cases.append(case)
            if progress and len(cases) % 20 == 0:
                progress(f"  {len(cases)}/{len(jobs)} series")

    gather(forked_imap(_job, jobs, workers, chunksize=2))
    return cases


def scores(values: np.ndarray, mirrored: np.ndarray, ratios: dict[str, float], floor: float) -> int:
    """The grade the rule gives one reduced case (the server's comparison, :func:`darker_fractions`)."""
    fractions = darker_fractions(values, mirrored, ratios, floor)
    return collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES))


def _fractions_by_ratio(case: GradingCase, source: str, floor: float) -> np.ndarray:
    """(phases, ratios): the hypoperfused fraction of each CPS phase at every ratio of :data:`RATIO_GRID`."""
    columns = [darker_fractions(case.values[source], case.mirrored[source], dict.fromkeys(CPS_PHASES, r), floor)
               for r in RATIO_GRID]
    return np.array([[column[p] for column in columns] for p in CPS_PHASES])


def agreement(truth: np.ndarray, estimate: np.ndarray) -> dict:
    return grade_agreement(estimate, truth, GRADES)


def fit_ratios(cases: list[GradingCase], source: str = "network", floor: float = 0.1) -> dict[str, float]:
    """The ratio per CPS phase (from :data:`RATIO_GRID`) with the most exact agreements on ``cases``; ties go to
    the higher weighted kappa, then to the ratio nearest the phantom's own definition of darker (0.3)."""
    table = np.stack([_fractions_by_ratio(c, source, floor) for c in cases])  # (cases, phases, ratios)
    truth = np.array([c.truth for c in cases])
    best: tuple | None = None
    for i, j, k in itertools.product(range(len(RATIO_GRID)), repeat=3):
        estimate = collateral_perfusion_score(table[:, 0, i], table[:, 1, j], table[:, 2, k])  # the served rule
        exact = int((estimate == truth).sum())
        if best is not None and exact < best[0]:
            continue
        kappa = weighted_kappa(truth, estimate)
        distance = -sum(abs(RATIO_GRID[x] - 0.3) for x in (i, j, k))
        key = (exact, kappa, distance)
        if best is None or key > best[:3]:
            best = (*key, (i, j, k))
    assert best is not None
    return {p: RATIO_GRID[x] for p, x in zip(CPS_PHASES, best[3], strict=True)}


def report(cases: list[GradingCase], ratios: dict[str, float], floor: float) -> dict:
    """Agreement per map source, overall and per modality x motion, with the side each source inferred."""
    out: dict = {"ratios": ratios, "floor": floor}
    for source in SOURCES:
        estimate = np.array([scores(c.values[source], c.mirrored[source], ratios, floor) for c in cases])
        truth = np.array([c.truth for c in cases])
        groups: dict = {"all": agreement(truth, estimate)}
        for modality, motion in itertools.product(sorted({c.modality for c in cases}), (False, True)):
            pick = np.array([c.modality == modality and c.motion == motion for c in cases])
            if pick.any():
                groups[f"{modality}{'_motion' if motion else ''}"] = agreement(truth[pick], estimate[pick])
        groups["side_correct"] = float(np.mean([c.side[source] == c.side_truth for c in cases]))
        out[source] = groups
    out["truth_grades"] = np.bincount([c.truth for c in cases], minlength=GRADES).tolist()
    return out

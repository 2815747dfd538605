"""Phantom version 5: MCA strokes of every collateral grade, as often as the study's patients had them.

The measured grade (SPEC section 4 on the noiseless contrast, :mod:`.grading`) follows from two drawn parameters:
the collateral strength of the haemodynamics (how long the delays, how deep the flow drop) and the territory's
size; measured over seeds (docs/phantom.md), strength 0-3 with a territory of 0.9-1.1 reads CPS 1, strength 5 with
one of 0.6-0.8 reads CPS 5. Very poor collaterals (CPS 0: more than half the territory dark until the late venous
phase) are the failure of collateral flow across the territory: strength 0 with a flat profile (the flow drop and
the delay hold to near the territory's edge, ``Territory.profile`` 3-8) in a large territory.

So a case is drawn for a grade: :func:`target_grade` deals a seed its grade with the study's frequencies
(:data:`STUDY_CPS_COUNTS`), :func:`draw_parameters`
the strength, size and profile known to produce it; the grade is then measured as always, and a draw that reads
another grade is drawn again (:data:`MAX_DRAWS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STUDY_CPS_COUNTS = (51, 42, 79, 60, 38, 26)  # SPEC section 4: 296 patients, CPS 0..5
MAX_DRAWS = 12  # draws for one target grade before the closest one is kept (none needed more than 4 over 2000 seeds)
GRADE_STREAM = 613_007  # the grade's own random stream: the case's other draws keep theirs


@dataclass(frozen=True)
class MCAParameters:
    strength: int  # collateral strength of the haemodynamics, 0..5
    size: float  # territory scale
    profile: float  # p in 1 - r^p across the territory (2: versions 1-4)


# (strength choices, size range, profile range) per target grade; each region read its grade on every seed tried.
_REGIONS: dict[int, tuple[tuple[tuple[int, ...], tuple[float, float], tuple[float, float]], ...]] = {
    0: (((0,), (0.95, 1.1), (3.0, 8.0)),),
    1: (((1, 2), (0.9, 1.1), (2.0, 2.0)), ((3,), (0.97, 1.1), (2.0, 2.0))),
    2: (((0, 1, 2), (0.76, 0.86), (2.0, 2.0)), ((4,), (0.88, 1.1), (2.0, 2.0))),
    3: (((0, 1, 2, 3), (0.6, 0.72), (2.0, 2.0)), ((4,), (0.76, 0.84), (2.0, 2.0))),
    4: (((4,), (0.6, 0.72), (2.0, 2.0)), ((5,), (0.88, 1.1), (2.0, 2.0))),
    5: (((5,), (0.6, 0.82), (2.0, 2.0)),),
}


def _schedule() -> tuple[int, ...]:
    """The study's 296 grades in the order a smooth weighted round-robin deals them: every run of consecutive
    entries holds each grade within one case of its share."""
    credit, total, order = [0] * len(STUDY_CPS_COUNTS), sum(STUDY_CPS_COUNTS), []
    for _ in range(total):
        credit = [c + n for c, n in zip(credit, STUDY_CPS_COUNTS, strict=True)]
        grade = max(range(len(credit)), key=lambda g: (credit[g], -g))
        credit[grade] -= total
        order.append(grade)
    return tuple(order)


SCHEDULE = _schedule()


def target_grade(seed: int) -> int:
    """The grade a seed's MCA case is drawn for: CPS 0..5 with the study's frequencies, dealt evenly over the seeds
    (not a random draw: any 30 consecutive seeds, an evaluation range, hold each grade within 4 points of the study's
    share, where random draws stray by twice that)."""
    return SCHEDULE[seed % len(SCHEDULE)]


def version_4_strength(seed: int) -> int:
    """The collateral strength versions 1-4 drew for a seed (its main stream's first draw): with
    ``generate_case(seed, strength=version_4_strength(seed))`` an MCA case is that version's, to the bit."""
    return int(np.random.default_rng(seed).integers(0, 6))


def draw_parameters(grade: int, seed: int, attempt: int) -> MCAParameters:
    """Strength, size and profile for a case meant to read ``grade`` (attempt 0, 1, ...: a fresh draw each)."""
    if grade not in _REGIONS:
        raise ValueError(f"a collateral grade is 0..5, got {grade}")
    rng = np.random.default_rng((seed, GRADE_STREAM, attempt + 1))
    strengths, (size_lo, size_hi), (p_lo, p_hi) = _REGIONS[grade][int(rng.integers(len(_REGIONS[grade])))]
    return MCAParameters(int(rng.choice(strengths)), float(rng.uniform(size_lo, size_hi)),
                         float(rng.uniform(p_lo, p_hi)) if p_hi > p_lo else p_lo)

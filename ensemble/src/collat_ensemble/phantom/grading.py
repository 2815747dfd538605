"""The phantom's collateral grade, read off its own haemodynamics by the rule of SPEC section 4.

The drawn collateral strength (``Stroke.grade``: how long the delays and how deep the flow drop
are) is not a CPS: a strong-collateral stroke in a large territory still leaves more than half of
the MCA territory dark in the capillary phase, and SPEC grades exactly that extent. So the truth
grade is measured, not assumed: in the noiseless contrast-agent concentration, each phase's mean
over its window (the reference method's windows), compared voxel by voxel with the mirror voxel
in MNI space on the assessment grid of :mod:`..territory`; darker means holding less than
``1 - TRUTH_RATIO`` of the mirror's contrast. The fractions of the MCA territory so marked go
through the SPEC rule. The phantom's perfusion grid lies in MNI space, so no registration is
involved here.
"""

from __future__ import annotations

import numpy as np

from ..clinical import collateral_perfusion_score
from ..phases import PHASE_NAMES, PhaseWindows
from ..territory import (
    CPS_PHASES,
    TRUTH_RATIO,
    hypoperfused_fractions,
    to_assessment_grid,
)

TRUTH_FLOOR = 0.1  # a mirror voxel holding less than 10 % of the phase's brain-wide 99th percentile shows no contrast


def phase_brightness(concentration: np.ndarray, windows: PhaseWindows, brain: np.ndarray) -> np.ndarray:
    """(x, y, z, 3): each CPS phase's mean concentration over its window, divided by its 99th percentile in the
    brain and clipped to [0, 1] (the brightness scale the maps are read on)."""
    out = []
    for phase in CPS_PHASES:
        start, stop = windows.bounds[PHASE_NAMES.index(phase)]
        mean = concentration[..., start:stop].mean(axis=-1)
        top = float(np.percentile(mean[brain], 99)) if brain.any() else 0.0
        out.append(np.clip(mean / top, 0.0, 1.0) if top > 0 else np.zeros_like(mean))
    return np.stack(out, axis=-1).astype(np.float32)


def true_grade(concentration: np.ndarray, windows: PhaseWindows, brain: np.ndarray, affine: np.ndarray,
               side: str) -> tuple[int, dict[str, float]]:
    """(CPS, hypoperfused fraction per CPS phase) of a phantom's noiseless concentration (x, y, z, t) on a grid
    whose voxels map to MNI mm by ``affine``."""
    values = to_assessment_grid(phase_brightness(concentration, windows, brain), affine)
    valid = to_assessment_grid(brain.astype(np.float32), affine) >= 0.5
    ratios = dict.fromkeys(CPS_PHASES, TRUTH_RATIO)
    fractions, _ = hypoperfused_fractions(values, valid, side, ratios, TRUTH_FLOOR)
    return collateral_perfusion_score(*(fractions[p] for p in CPS_PHASES)), fractions

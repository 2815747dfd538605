"""The training domain of U-Net weights: what their training cases held, so the server can tell a scan unlike them.

Today one quantity: the ADC core. The U-Net reads hypoperfusion off a diffusion scan, and its
only sight of a stroke there is the core; the server's ``core_in_training_domain`` gate
(``collat_ensemble.quality``) withholds DEFUSE 3 for a scan whose core is far below every
training case's. The volumes are the phantoms' true cores (SPEC section 4 on the noiseless ADC,
which the served measurement matches to 0.02 mL on held-out cases).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collat_ensemble.phantom import generate_case
from collat_ensemble.phantom.case import PHANTOM_VERSION

from .data import case_space, forked_imap


def _core_ml(job: tuple[int, str]) -> float:
    seed, space = job
    return float(generate_case(seed, space=case_space(seed, space)).truth["core_ml"])  # type: ignore[arg-type]


def training_core_volumes(seeds: Sequence[int], space: str = "mixed", workers: int = 1) -> list[float]:
    """The true core (mL) of each training case, as the training run generated it (``space`` as it was given)."""
    return list(forked_imap(_core_ml, [(s, space) for s in seeds], workers, chunksize=4))


def domain_document(seeds: Sequence[int], cores: Sequence[float]) -> dict:
    """The model card's ``training_domain``: the range of the training cores and which cases they are."""
    if not cores or len(cores) != len(seeds):
        raise ValueError("a training domain needs one core volume per training case")
    values = np.asarray(cores, dtype=np.float64)
    return {"core_ml": {"min": round(float(values.min()), 3), "p05": round(float(np.percentile(values, 5)), 3),
                        "median": round(float(np.median(values)), 3), "max": round(float(values.max()), 3)},
            "cases": f"{len(seeds)} phantom cases, seeds {min(seeds)}-{max(seeds)} (phantom version "
                     f"{PHANTOM_VERSION}), the weights' last training run",
            "measured_on": "each case's true ADC core (SPEC section 4 on the noiseless ADC)"}

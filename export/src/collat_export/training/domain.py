"""The training domain of U-Net weights: what their training cases held, so the server can tell a scan unlike them.

The U-Net reads hypoperfusion off a diffusion scan, where the core is its only sure sight of a
stroke. The record holds the training cases' cores and, for cores up to each of a ladder of sizes,
the largest lesion any training case had: the server's ``hypoperfusion_in_training_domain`` gate
(``collat_ensemble.quality``) withholds a lesion much larger than anything the weights were shown
around a core like the scan's (a normal brain or a lacune read as a hemispheric stroke). The
volumes are the phantoms' true ones (SPEC section 4 on the noiseless ADC, which the served
measurement matches to 0.02 mL on held-out cases).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collat_ensemble.phantom import generate_case
from collat_ensemble.phantom.case import PHANTOM_VERSION

from .data import case_kind, case_space, forked_imap

# mL: fine where a normal brain, a lacune and a small stroke differ, coarse where every lesion is large.
CORE_BOUNDS_ML = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0,
                  150.0, 200.0, 300.0)


def _volumes(job: tuple[int, str, str]) -> tuple[float, float]:
    seed, space, kinds = job
    truth = generate_case(seed, space=case_space(seed, space), kind=case_kind(seed, kinds)).truth  # type: ignore[arg-type]
    return float(truth["core_ml"]), float(truth["hypoperfusion_ml"])


def training_volumes(seeds: Sequence[int], space: str = "mixed", kinds: str = "mixed",
                     workers: int = 1) -> list[tuple[float, float]]:
    """(true core, true lesion) in mL of each training case, as the training run generated it (``space`` and
    ``kinds`` as it was given)."""
    return list(forked_imap(_volumes, [(s, space, kinds) for s in seeds], workers, chunksize=4))


def lesion_envelope(volumes: Sequence[tuple[float, float]]) -> dict[str, float]:
    """For each bound of :data:`CORE_BOUNDS_ML` that some training core reaches: the largest lesion among the
    cases whose core was at most that bound."""
    envelope: dict[str, float] = {}
    for bound in CORE_BOUNDS_ML:
        lesions = [lesion for core, lesion in volumes if core <= bound]
        if lesions:
            envelope[f"{bound:g}"] = round(max(lesions), 2)
    return envelope


def domain_document(seeds: Sequence[int], volumes: Sequence[tuple[float, float]], kinds: str = "mca",
                    cases: str | None = None) -> dict:
    """The model card's ``training_domain``: the range of the training cores, the lesion envelope, which cases
    (``cases``: said otherwise, for a dataset's subjects, whose volumes then need no seeds)."""
    if not volumes or (cases is None and len(volumes) != len(seeds)):
        raise ValueError("a training domain needs one (core, lesion) volume pair per training case")
    cores = np.asarray([core for core, _ in volumes], dtype=np.float64)
    return {"core_ml": {"min": round(float(cores.min()), 3), "p05": round(float(np.percentile(cores, 5)), 3),
                        "median": round(float(np.median(cores)), 3), "max": round(float(cores.max()), 3)},
            "lesion_ml_by_core": lesion_envelope(volumes),
            "cases": cases or f"{len(seeds)} phantom cases, seeds {min(seeds)}-{max(seeds)} (phantom version "
                              f"{PHANTOM_VERSION}, kinds {kinds}), the weights' last training run",
            "measured_on": "each case's true ADC core and hypoperfusion lesion (SPEC section 4 on the noiseless "
                           "ADC; Tmax > 6 s united with the core)" + (
                               "; each dataset subject's measured ADC core and reference lesion" if cases else "")}

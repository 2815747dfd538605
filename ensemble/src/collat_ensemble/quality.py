"""Quality gates: every check an input passes before a treatment decision is read from it.

Each check has a value, the limit it is held to, a verdict and a sentence a clinician can
read. A failed check does not stop the maps (they may still help a reader who knows why they
are doubtful), but it withholds the decisions it bears on (its ``withholds``; DEFUSE 3 and
DAWN unless it says otherwise): they come back null, with the reasons. An input that cannot
be analysed at all (not a brain, ADC in no known unit) is refused earlier, as
``InputValidationError``; these gates are for inputs that can be analysed but not trusted.

Why each limit:

* ``registration_similarity`` >= 0.8 (Dice of the registered brain outline with the template's
  brain, over the scan's field of view; contrast-free, so it means the same on every scanner):
  real registered scans reach 0.88-0.94 and phantoms in a 15 degree, 20 mm pose 0.96, while a
  brain merely centred on the template, unregistered, overlaps it by 0.63-0.81.
* ``template_coverage`` >= 0.8: the scan must contain most of the brain; the volumes and the side
  are read on the whole brain, and a partial scan (a few slices) under-counts both.
* ``head_scale`` 0.8-1.25: affine registration found a head this much larger or smaller than
  the template (adult heads lie within about 10 %): outside it, the registration went wrong.
* ``brain_volume_ml`` 700-2200 mL on the scan's grid: an adult brain; anything else means the
  brain mask, and so the core, was found in the wrong place.
* ``b_value`` 800-1200 s/mm^2 when the request gives it (``dwi_b_value``, read by the SDK from the DICOM
  header or given by the user): the network was trained on b=1000 DWIs;
  other b-values change the DWI contrast it reads (unknown -> reported, not failed).
* ``lesion_within_hemisphere``: a unilateral stroke's hypoperfusion cannot exceed the brain's
  half; a larger one is a misread scan, as the 1770 mL of the case that started this.
* ``core_in_training_domain``: the U-Net reads hypoperfusion from a diffusion scan, and a
  diffusion scan shows a stroke only through its core. Weights whose training cases all had a
  core (every phantom does: its core radius never reaches zero) have never been shown a scan
  without one, and on one they paint the hypoperfusion from the NIHSS and the side alone: the
  real no-stroke Philips DWI of the test corpus came back with 233 mL on the side it was told,
  around a 0 mL core, a DEFUSE 3 "yes" had the scan covered the whole brain. So a core below
  half the smallest training core (the weights' ``training_domain``, from their model card)
  withholds DEFUSE 3, the one decision that reads the U-Net. DAWN reads only the ADC core, the
  age and the NIHSS, so this check leaves it standing (``withholds``). Not a "no core, no
  treatment" rule: DEFUSE 3 admits patients without a core, and weights trained on such
  patients record a training minimum of 0 mL, which this check then passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from collat_contract.clinical import DWI_B_VALUE_RANGE, b_value_in_range

Verdict = Literal["pass", "fail", "unknown"]
Decision = Literal["defuse3", "dawn"]
BOTH_DECISIONS: tuple[Decision, ...] = ("defuse3", "dawn")

MIN_REGISTRATION_SIMILARITY = 0.8
MIN_TEMPLATE_COVERAGE = 0.8
HEAD_SCALE_RANGE = (0.8, 1.25)
BRAIN_ML_RANGE = (700.0, 2200.0)


@dataclass(frozen=True)
class Check:
    name: str
    value: float | str | None
    limit: str
    verdict: Verdict
    reason: str  # what a failure means for the reader; empty when passed
    withholds: tuple[Decision, ...] = BOTH_DECISIONS  # the decisions a failure withholds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "withholds": list(self.withholds)}


def _check(name: str, value: float | str | None, limit: str, ok: bool | None, failure: str,
           withholds: tuple[Decision, ...] = BOTH_DECISIONS) -> Check:
    verdict: Verdict = "unknown" if ok is None else ("pass" if ok else "fail")
    return Check(name, value, limit, verdict, "" if ok else failure, withholds)


def registration_checks(similarity: float, coverage: float, scale: float, brain_ml: float) -> list[Check]:
    lo, hi = HEAD_SCALE_RANGE
    blo, bhi = BRAIN_ML_RANGE
    return [
        _check("registration_similarity", round(similarity, 3), f">= {MIN_REGISTRATION_SIMILARITY}",
               similarity >= MIN_REGISTRATION_SIMILARITY,
               f"the brain overlaps the MNI template poorly after registration (Dice {similarity:.2f}): "
               "the lesion may be placed in the wrong territory"),
        _check("template_coverage", round(coverage, 3), f">= {MIN_TEMPLATE_COVERAGE}",
               coverage >= MIN_TEMPLATE_COVERAGE,
               f"the scan covers {coverage:.0%} of the brain: volumes and side are under-counted"),
        _check("head_scale", round(scale, 3), f"{lo}-{hi}", lo <= scale <= hi,
               f"registration found a head {scale:.2f} times the template's size: it has likely failed"),
        _check("brain_volume_ml", round(brain_ml, 1), f"{blo:g}-{bhi:g}", blo <= brain_ml <= bhi,
               f"the brain found on the scan measures {brain_ml:.0f} mL, not an adult brain"),
    ]


def b_value_check(b_value: float | None) -> Check:
    lo, hi = DWI_B_VALUE_RANGE
    return _check("b_value", b_value, f"{lo:g}-{hi:g} s/mm^2", None if b_value is None else b_value_in_range(b_value),
                  "b-value not given: the network expects b=1000 DWIs" if b_value is None else
                  f"the DWI's b-value is {b_value:g} s/mm^2; the network was trained on b=1000")


def lesion_checks(hypoperfusion_ml: float, core_ml: float, brain_ml: float) -> list[Check]:
    half = brain_ml / 2.0
    largest = max(hypoperfusion_ml, core_ml)
    return [_check("lesion_within_hemisphere", round(largest, 1), f"<= {half:.0f} mL (half the brain)",
                   largest <= half, f"a lesion of {largest:.0f} mL is larger than a hemisphere ({half:.0f} mL): "
                   "the scan has been misread")]


@dataclass(frozen=True)
class TrainingDomain:
    """What the U-Net's weights were trained on, as far as the gates need it (their model card's
    ``training_domain``, written by ``collat-train domain``)."""

    min_core_ml: float  # the smallest ADC core among the training cases

    @classmethod
    def from_dict(cls, doc: Any) -> TrainingDomain:
        try:
            low = float(doc["core_ml"]["min"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not a training domain ({exc!r} missing or not a number)") from None
        if not low >= 0.0:
            raise ValueError(f"a training domain's smallest core must be a volume >= 0 mL, got {low}")
        return cls(low)


def core_domain_check(core_ml: float, domain: TrainingDomain | None) -> Check:
    """Is the scan's core one the U-Net was trained to read hypoperfusion around (see the module's docstring)?"""
    if domain is None:
        return _check("core_in_training_domain", round(core_ml, 2), "the weights' training domain", None,
                      "the U-Net's model card records no training domain: whether it was trained on scans like "
                      "this one is not known", ("defuse3",))
    lowest = domain.min_core_ml / 2.0
    return _check("core_in_training_domain", round(core_ml, 2),
                  f">= {lowest:.2f} mL (half the smallest core the U-Net was trained on)", core_ml >= lowest,
                  f"the ADC core measures {core_ml:.1f} mL, and the U-Net was trained only on strokes with a core of "
                  f"{domain.min_core_ml:.2f} mL or more: without a diffusion lesion its hypoperfusion rests on the "
                  "NIHSS and the side alone (a perfusion scan measures it)", ("defuse3",))


def withheld(checks: list[dict[str, Any]], decision: Decision) -> bool:
    """Does a failed check (as a dict) withhold ``decision``?"""
    return any(c["verdict"] == "fail" and decision in c["withholds"] for c in checks)


def summary(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The METRICS ``quality`` section from checks (as dicts): every check, and the reasons decisions were
    withheld (any failed check; an empty list: none; each check's ``withholds`` says which)."""
    return {"checks": list(checks), "decisions_withheld": [c["reason"] for c in checks if c["verdict"] == "fail"]}

"""Quality gates: every check an input passes before a treatment decision is read from it.

Each check has a value, the limit it is held to, a verdict and a sentence a clinician can read. A failed check
keeps the maps but withholds the decisions it bears on (``withholds``: DEFUSE 3 and DAWN unless it says otherwise);
inputs that cannot be analysed at all are refused earlier, as ``InputValidationError``. Why each limit is where it
is: docs/diffusion-inputs.md ("Checked").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collat_contract.clinical import DWI_B_VALUE_RANGE, b_value_in_range
from collat_contract.metrics import Decision, Quality, QualityCheck, Verdict

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

    def as_dict(self) -> QualityCheck:
        """As the METRICS document's ``quality.checks`` hold it."""
        return QualityCheck(name=self.name, value=self.value, limit=self.limit, verdict=self.verdict,
                            reason=self.reason, withholds=list(self.withholds))


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
    """Is the scan's core one the U-Net was trained to read hypoperfusion around? A core below half the smallest
    training core withholds DEFUSE 3 only (DAWN reads the core, not the U-Net); docs/diffusion-inputs.md says why."""
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


def withheld(checks: list[QualityCheck], decision: Decision) -> bool:
    """Does a failed check (as a dict) withhold ``decision``?"""
    return any(c["verdict"] == "fail" and decision in c["withholds"] for c in checks)


def summary(checks: list[QualityCheck]) -> Quality:
    """The METRICS ``quality`` section from checks (as dicts): every check, and the reasons decisions were
    withheld (any failed check; an empty list: none; each check's ``withholds`` says which)."""
    return Quality(checks=list(checks), decisions_withheld=[c["reason"] for c in checks if c["verdict"] == "fail"])

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
    """Another b-value changes the DWI contrast the U-Net reads and the ADC the core is cut from (a b=2500 ADC runs
    lower): the decisions and the lesion are withheld."""
    lo, hi = DWI_B_VALUE_RANGE
    return _check("b_value", b_value, f"{lo:g}-{hi:g} s/mm^2", None if b_value is None else b_value_in_range(b_value),
                  "b-value not given: the network expects b=1000 DWIs" if b_value is None else
                  f"the DWI's b-value is {b_value:g} s/mm^2; the network was trained on b=1000, and the core "
                  "threshold holds at b=1000: outside what the network was trained on",
                  (*BOTH_DECISIONS, "hypoperfusion"))


# A lesion withheld as implausible takes the DEFUSE 3 decision with it (it is read off the lesion); DAWN reads the
# core, the age and the NIHSS only, and stands.
LESION: tuple[Decision, ...] = ("hypoperfusion", "defuse3")
MIN_ON_SIDE_FRACTION = 0.7  # of the lesion beyond the core, in the hemisphere the side names
MIN_LOCATED_ML = 1.0  # below this much core, or lesion beyond it, which hemisphere holds it says nothing


def core_check(core_ml: float, brain_ml: float) -> Check:
    """An ADC core larger than a hemisphere is not a stroke but a misread ADC (units, b-value, an artefact)."""
    half = brain_ml / 2.0
    return _check("core_within_hemisphere", round(core_ml, 1), f"<= {half:.0f} mL (half the brain)", core_ml <= half,
                  f"an ADC core of {core_ml:.0f} mL is larger than a hemisphere ({half:.0f} mL): the ADC has been "
                  "misread (units, b-value or an artefact)", (*BOTH_DECISIONS, "hypoperfusion"))


MIN_CORE_ON_SIDE_FRACTION = 1.0 / 3.0  # of the ADC core, in the hemisphere the side names (inference uses 2/3)


def core_side_check(side: str, core_ml: float, on_side_fraction: float | None) -> Check:
    """A side of left or right that the ADC core contradicts (two thirds of it or more in the other hemisphere):
    the U-Net would read the hypoperfusion in the hemisphere without the stroke. ``on_side_fraction``: the share of
    the core in the hemisphere ``side`` names (None: no core of 1 mL or more to hold the side to)."""
    ok = None if on_side_fraction is None else on_side_fraction >= MIN_CORE_ON_SIDE_FRACTION
    share = "-" if on_side_fraction is None else f"{on_side_fraction:.0%}"
    return _check("side_matches_core", None if on_side_fraction is None else round(on_side_fraction, 3),
                  f">= {MIN_CORE_ON_SIDE_FRACTION:.0%} of the ADC core in the {side} hemisphere", ok,
                  f"no ADC core of {MIN_LOCATED_ML:g} mL or more to hold the side to" if ok is None else
                  f"the side given is {side}, but only {share} of the {core_ml:.1f} mL ADC core lies in the {side} "
                  "hemisphere: check the side of the symptoms (or give bilateral)", LESION)


def assessable_check(side: str, nihss_given: bool = True) -> Check:
    """The U-Net is told which hemisphere to read and the NIHSS; with no side given and no core to infer it from,
    or no NIHSS, it is not run, and the reason names the input that would run it."""
    missing = []
    if side == "unknown":
        missing.append("no stroke side was given and the ADC shows no core to infer it from")
    if not nihss_given:
        missing.append("no NIHSS was given")
    wanted = [w for w, gap in (("the side of the symptoms: left, right or bilateral", side == "unknown"),
                               ("the NIHSS, 0-42", not nihss_given)) if gap]
    return _check("hypoperfusion_assessable", side if nihss_given else f"{side}, NIHSS not known",
                  "an NIHSS, and a side given or an ADC core to infer it from", not missing,
                  f"{' and '.join(missing)}: the hypoperfusion network was not run (give {' and '.join(wanted)})",
                  LESION)


def lesion_checks(hypoperfusion_ml: float, core_ml: float, brain_ml: float, side: str,
                  on_side_fraction: float | None) -> list[Check]:
    """Is the lesion the network drew one a stroke could make? ``on_side_fraction``: the share of the lesion beyond
    the core that lies in the hemisphere ``side`` names (None for a bilateral side or no lesion beyond the core)."""
    half = brain_ml / 2.0
    checks = [_check("hypoperfusion_within_hemisphere", round(hypoperfusion_ml, 1),
                     f"<= {half:.0f} mL (half the brain)", hypoperfusion_ml <= half,
                     f"the U-Net drew {hypoperfusion_ml:.0f} mL of hypoperfusion, more than a hemisphere "
                     f"({half:.0f} mL): outside what the network was trained on", LESION)]
    if side in ("left", "right"):
        ok = None if on_side_fraction is None else on_side_fraction >= MIN_ON_SIDE_FRACTION
        share = "-" if on_side_fraction is None else f"{on_side_fraction:.0%}"
        checks.append(_check(
            "hypoperfusion_on_side", None if on_side_fraction is None else round(on_side_fraction, 3),
            f">= {MIN_ON_SIDE_FRACTION:.0%} of the lesion beyond the core in the {side} hemisphere", ok,
            f"less than {MIN_LOCATED_ML:g} mL of lesion beyond the core: where it lies says nothing" if ok is None
            else f"only {share} of the hypoperfusion the U-Net drew lies in the {side} hemisphere the side names: "
            "outside what the network was trained on (a unilateral stroke)", LESION))
    return checks


@dataclass(frozen=True)
class TrainingDomain:
    """What the U-Net's weights were trained on, as far as the gates need it (their model card's
    ``training_domain``, written by ``collat-train domain``)."""

    min_core_ml: float  # the smallest ADC core among the training cases
    # (core bound, largest lesion): the largest lesion among the training cases whose core was at most the bound,
    # bounds ascending. Empty for weights recorded before it was (their gate is core_domain_check).
    lesion_by_core: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_dict(cls, doc: Any) -> TrainingDomain:
        try:
            low = float(doc["core_ml"]["min"])
            envelope = tuple(sorted((float(k), float(v)) for k, v in doc.get("lesion_ml_by_core", {}).items()))
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a training domain ({exc!r} missing or not a number)") from None
        if not low >= 0.0:
            raise ValueError(f"a training domain's smallest core must be a volume >= 0 mL, got {low}")
        if any(not (k >= 0.0 and v >= 0.0) for k, v in envelope):
            raise ValueError("a training domain's lesion_ml_by_core must map core volumes to lesion volumes >= 0 mL")
        return cls(low, envelope)

    def largest_lesion(self, core_ml: float) -> tuple[float, float] | None:
        """(core bound, largest training lesion) for cores like ``core_ml``: the training cases whose core was at
        most about its size (1.5 times, and at least 0.25 mL more: the core's own measurement error); None when the
        core is larger than every bound (the hemisphere check still holds)."""
        reach = max(1.5 * core_ml, core_ml + 0.25)
        return next(((k, v) for k, v in self.lesion_by_core if k >= reach), None)


LESION_DOMAIN_FACTOR, LESION_DOMAIN_MARGIN_ML = 1.25, 5.0


def lesion_domain_check(hypoperfusion_ml: float, core_ml: float, domain: TrainingDomain) -> Check:
    """Did the network draw more hypoperfusion around this core than around any training core like it? A normal
    brain, a lacune or a mimic read as a hemispheric stroke fails here: the reason names the real cause."""
    envelope = domain.largest_lesion(core_ml)
    if envelope is None:
        return _check("hypoperfusion_in_training_domain", round(hypoperfusion_ml, 1),
                      "cores beyond the training cases' are held by the hemisphere check", True, "", LESION)
    bound, largest = envelope
    limit = LESION_DOMAIN_FACTOR * largest + LESION_DOMAIN_MARGIN_ML
    lesionless = "no diffusion lesion" if core_ml < 0.05 else f"a {core_ml:.1f} mL ADC core"
    most = f"{largest:.1f}" if largest < 10.0 else f"{largest:.0f}"
    return _check("hypoperfusion_in_training_domain", round(hypoperfusion_ml, 1),
                  f"<= {limit:.0f} mL ({LESION_DOMAIN_FACTOR:g} x the largest training lesion around a core of at "
                  f"most {bound:g} mL, + {LESION_DOMAIN_MARGIN_ML:g} mL)", hypoperfusion_ml <= limit,
                  f"the U-Net drew {hypoperfusion_ml:.0f} mL of hypoperfusion around {lesionless}; no training case "
                  f"with a core of at most {bound:g} mL had more than {most} mL: outside what the network was "
                  f"trained on ({lesionless})", LESION)


def core_domain_check(core_ml: float, domain: TrainingDomain | None) -> Check:
    """Is the scan's core one the U-Net was trained to read hypoperfusion around? Below half the smallest training
    core, the lesion it draws is outside what it was trained on and is withheld, with DEFUSE 3 (DAWN reads the core,
    not the U-Net); docs/diffusion-inputs.md says why."""
    if domain is None:
        return _check("core_in_training_domain", round(core_ml, 2), "the weights' training domain", None,
                      "the U-Net's model card records no training domain: whether it was trained on scans like "
                      "this one is not known", LESION)
    lowest = domain.min_core_ml / 2.0
    lesionless = "no diffusion lesion" if core_ml < 0.05 else f"a {core_ml:.1f} mL ADC core"
    return _check("core_in_training_domain", round(core_ml, 2),
                  f">= {lowest:.2f} mL (half the smallest core the U-Net was trained on)", core_ml >= lowest,
                  f"the ADC core measures {core_ml:.1f} mL, and the U-Net was trained only on strokes with a core of "
                  f"{domain.min_core_ml:.2f} mL or more: outside what the network was trained on ({lesionless}); a "
                  "perfusion scan measures the hypoperfusion", LESION)


def withheld(checks: list[QualityCheck], decision: Decision) -> bool:
    """Does a failed check (as a dict) withhold ``decision``?"""
    return any(c["verdict"] == "fail" and decision in c["withholds"] for c in checks)


def summary(checks: list[QualityCheck]) -> Quality:
    """The METRICS ``quality`` section from checks (as dicts): every check, and the reasons decisions were
    withheld (any failed check; an empty list: none; each check's ``withholds`` says which)."""
    return Quality(checks=list(checks), decisions_withheld=[c["reason"] for c in checks if c["verdict"] == "fail"])

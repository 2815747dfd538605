"""The rules a request's clinical inputs must satisfy: written once, applied by the SDK and by the server.

The SDK checks them before anything is uploaded (a typo should not cost a 100 MB upload) and
the server checks them again because it trusts nothing it receives; both call
:func:`check_clinical`, so they accept and refuse exactly the same values. Numbers must be
finite JSON numbers (booleans are not numbers here, although Python says so), the NIHSS an
integer (14.0 is accepted as 14), and no field beyond the five below may ride along: that
keeps identifiers out of the request.

``dwi_b_value`` is an acquisition fact, not a clinical one, but it travels with the clinical
inputs because it is a property of the same request (one small JSON document), it comes from
the DICOM header the SDK read (or from the user, for a NIfTI), and the server's b-value quality
gate needs it. :data:`DWI_B_VALUE_RANGE` is the range the U-Net was trained in: the SDK refuses
a DWI outside it unless the user overrides, and the server withholds the decisions of one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

FIELDS: tuple[str, ...] = ("nihss", "age", "side", "onset_to_imaging_min", "dwi_b_value")
NIHSS_MIN, NIHSS_MAX = 0, 42
AGE_MIN, AGE_MAX = 18.0, 120.0  # years: the trials enrolled adults; DAWN splits at 80
SIDES: tuple[str, ...] = ("left", "right", "bilateral", "unknown")
DWI_B_VALUE_RANGE = (800.0, 1200.0)  # s/mm^2: the U-Net was trained on b=1000 DWIs
B_VALUE_MAX = 10000.0  # s/mm^2: beyond any clinical or research diffusion scan

# The ischaemic core is DEFUSE 3's (RAPID's): ADC below this. The server measures the core by it and the SDK names
# the served CORE_MASK after it (report, SEG), so both read the one number here.
CORE_ADC_THRESHOLD = 620e-6  # mm^2/s
CORE_LABEL = f"ADC core (ADC < {CORE_ADC_THRESHOLD * 1e6:g}e-6 mm2/s)"


class ClinicalInputError(ValueError):
    """The clinical inputs break a rule; the message names the field and the rule."""


def _number(value: Any) -> bool:
    """A finite real number; numpy's scalars count (they register with :mod:`numbers`), booleans do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or math.isfinite(float(value))


def check_nihss(value: Any) -> int:
    if not _number(value) or not NIHSS_MIN <= value <= NIHSS_MAX or value != int(value):
        raise ClinicalInputError(f"nihss must be an integer {NIHSS_MIN}-{NIHSS_MAX}, got {value!r}")
    return int(value)


def check_side(value: Any) -> str:
    """A stroke side; None means "unknown" (the server then infers it from the ADC core)."""
    if value is None:
        return "unknown"
    if not isinstance(value, str) or value not in SIDES:
        raise ClinicalInputError(f"side must be {', '.join(SIDES[:-1])} or {SIDES[-1]}, got {value!r}")
    return value


def check_b_value(value: Any) -> float | None:
    """A DWI's b-value in s/mm^2, or None (not known)."""
    if value is None:
        return None
    if not _number(value) or not 0 < value <= B_VALUE_MAX:
        raise ClinicalInputError(f"dwi_b_value must be a number of s/mm^2 in (0, {B_VALUE_MAX:g}], got {value!r}")
    return float(value)


def b_value_in_range(b_value: float) -> bool:
    lo, hi = DWI_B_VALUE_RANGE
    return lo <= b_value <= hi


def check_clinical(value: Any) -> dict[str, Any]:
    """The validated, normalized inputs ``{"nihss": int | None, "age": float | None, "side": str,
    "onset_to_imaging_min": float | None, "dwi_b_value": float | None}``, or :class:`ClinicalInputError`."""
    if not isinstance(value, Mapping):
        raise ClinicalInputError(f"clinical inputs must be a JSON object, got {type(value).__name__}")
    unknown = set(value) - set(FIELDS)
    if unknown:
        raise ClinicalInputError(f"clinical inputs have unknown fields: {', '.join(sorted(map(str, unknown)))}")
    if "nihss" not in value:  # a forgotten score is refused; a null one is stated as not known
        raise ClinicalInputError(f"clinical inputs must give nihss ({NIHSS_MIN}-{NIHSS_MAX}, or null: not known)")
    nihss = None if value["nihss"] is None else check_nihss(value["nihss"])
    age = value.get("age")
    if age is not None and (not _number(age) or not AGE_MIN <= age <= AGE_MAX):
        raise ClinicalInputError(f"age must be {AGE_MIN:g}-{AGE_MAX:g} years, got {age!r}")
    onset = value.get("onset_to_imaging_min")
    if onset is not None and (not _number(onset) or onset < 0):
        raise ClinicalInputError(f"onset_to_imaging_min must be a non-negative number of minutes, got {onset!r}")
    return {"nihss": nihss, "age": None if age is None else float(age), "side": check_side(value.get("side")),
            "onset_to_imaging_min": None if onset is None else float(onset),
            "dwi_b_value": check_b_value(value.get("dwi_b_value"))}

"""The client and the server accept and refuse exactly the same clinical inputs, and what they accept is what the
rules say (an oracle written from the rules' documentation, independent of the code)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collat_client.schema import Clinical
from collat_contract.clinical import FIELDS, SIDES
from collat_ensemble.errors import InputValidationError
from collat_ensemble.serving.diffusion import ClinicalInputs

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=6)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=3)
EDGES = st.sampled_from([0, 42, 43, -1, 14.0, 14.5, -0.0, 17.999, 18, 18.0, 120, 120.0001, 80, 1e308, 10 ** 30,
                         1000, 1000.0, 2500, 10000, 10000.5, 0.0,
                         "14", "left", "LEFT", "", *SIDES])
VALUES = JSON_VALUES | EDGES | st.integers(-5, 50) | st.floats(-10.0, 130.0)
PAYLOADS = st.dictionaries(st.sampled_from((*FIELDS, "patient_name", "nihss ")), VALUES, max_size=5)


def oracle(payload: dict) -> bool:
    """The documented rules: only the five fields; nihss given, null (not known) or an integer 0-42 (a float equal
    to one counts); age
    missing/null or a finite number 18-120; side missing/null or one of four words; onset missing/null or a
    finite number >= 0; dwi_b_value missing/null or a finite number in (0, 10000]. Booleans are not numbers."""
    def number(v) -> bool:
        return type(v) is int or (type(v) is float and math.isfinite(v))

    if set(payload) - set(FIELDS) or "nihss" not in payload:
        return False
    n = payload["nihss"]
    if n is not None and not (number(n) and 0 <= n <= 42 and n == int(n)):
        return False
    age, side, onset = payload.get("age"), payload.get("side"), payload.get("onset_to_imaging_min")
    if age is not None and not (number(age) and 18 <= age <= 120):
        return False
    if side is not None and side not in ("left", "right", "bilateral", "unknown"):
        return False
    if onset is not None and not (number(onset) and onset >= 0):
        return False
    b = payload.get("dwi_b_value")
    return b is None or (number(b) and 0 < b <= 10000)


def server(payload: dict) -> ClinicalInputs | None:
    try:
        return ClinicalInputs.from_json(payload)
    except InputValidationError:
        return None


def client(payload: dict) -> Clinical | None:
    try:
        return Clinical.model_validate(payload)
    except ValidationError:
        return None


@settings(max_examples=1500, deadline=None)
@given(payload=PAYLOADS)
def test_client_and_server_agree_with_each_other_and_with_the_rules(payload):
    on_server, on_client, expected = server(payload), client(payload), oracle(payload)
    assert (on_server is not None) == expected, f"server {'accepted' if on_server else 'refused'} {payload!r}"
    assert (on_client is not None) == expected, f"client {'accepted' if on_client else 'refused'} {payload!r}"
    if expected:
        assert on_client.model_dump() == asdict(on_server)


@settings(max_examples=300, deadline=None)
@given(payload=PAYLOADS)
def test_what_the_client_sends_the_server_reads_unchanged(payload):
    accepted = client(payload)
    if accepted is None:
        return
    read = ClinicalInputs.from_json(json.loads(accepted.model_dump_json()))
    assert (read.nihss, read.age, read.side, read.onset_to_imaging_min) == \
        (accepted.nihss, accepted.age, accepted.side, accepted.onset_to_imaging_min)


@pytest.mark.parametrize("payload", [
    {"nihss": 10, "age": True}, {"nihss": 10.0, "side": None}, {"nihss": 10, "onset_to_imaging_min": float("nan")},
    {"nihss": "10"}, {"nihss": 10, "side": 0}, {"nihss": 10, "age": float("inf")},
])
def test_edge_cases_the_old_rules_disagreed_on(payload):
    """Before one home: the server took side=0 as "unknown" and a NaN onset; pydantic took "10" as a NIHSS."""
    assert (server(payload) is not None) == (client(payload) is not None) == oracle(payload)


def test_the_sdk_model_carries_exactly_the_contracts_fields():
    assert tuple(Clinical.model_fields) == FIELDS


def test_the_core_label_spells_the_core_threshold():
    """The text the SDK's report and SEG name the core by (read by PACS users) is built from the one threshold the
    server measures the core with, and reads as before."""
    from collat_contract.clinical import CORE_ADC_THRESHOLD, CORE_LABEL
    from collat_contract.tensors import CORE_MASK

    assert CORE_ADC_THRESHOLD == 620e-6
    assert CORE_LABEL == "ADC core (ADC < 620e-6 mm2/s)"
    assert CORE_MASK.description.startswith(CORE_LABEL)

"""The METRICS document the serving code builds validates against the client's schema, with no server.

The Python-backend adapters run exactly as tritonserver runs them (configured from the
rendered config.pbtxt's tensors, fed numpy arrays, answering with the JSON they encode), with
stand-ins for the two networks; what comes out must be a valid ``collat_client.schema.Metrics``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from collat_client.schema import Metrics
from collat_contract import names
from collat_contract.tensors import mrod_io, unet_io
from collat_ensemble.server.pipelines import python_steps
from collat_ensemble.serving.perfusion import NetworkGrid
from collat_ensemble.serving.triton_models import STEPS
from collat_ensemble.template import TEMPLATE_FILE, default_template, save_template

MROD, UNET = mrod_io(60, 5), unet_io(4, 16, 128, 128)
PARAMETERS = {
    names.PREPROCESS_PERFUSION: {"network_grid": str(NetworkGrid(60, 1.6, 12, 64, 64)),
                                 "network_model": MROD.triton_name},
    names.POSTPROCESS_COLLATERAL: {"network_model": MROD.triton_name},
    names.POSTPROCESS_HYPOPERFUSION: {"network_model": UNET.triton_name},
}


def adapter(name: str, repository):
    """A Python-backend step initialized the way tritonserver initializes it."""
    step = next(s for s in python_steps(MROD, UNET) if s.name == name)
    config = {"name": name, "input": [{"name": t.name} for t in step.inputs],
              "output": [{"name": t.name} for t in step.outputs],
              "parameters": {k: {"string_value": v} for k, v in PARAMETERS.get(name, {}).items()}}
    if name in (names.PREPROCESS_DIFFUSION, names.PREPROCESS_PERFUSION):  # what the repository builder puts there
        (repository / name / "1").mkdir(parents=True, exist_ok=True)
        save_template(default_template(), repository / name / "1" / TEMPLATE_FILE)
    model = STEPS[name]()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(repository / name),
                      "model_version": "1"})
    return model


def document(tensor: np.ndarray) -> dict:
    return json.loads(tensor.reshape(-1)[0])


@pytest.fixture(scope="module")
def served_documents(case_right_good, tmp_path_factory):
    case, repository = case_right_good, tmp_path_factory.mktemp("repository")
    x, mask, context = adapter(names.PREPROCESS_PERFUSION, repository).run(
        case.perfusion, case.perfusion_affine, np.array([case.frame_seconds], np.float32))
    phases = np.stack([x[0, 10 * i: 10 * i + 10].mean(axis=0) for i in range(5)])[None] / 0.9  # a stand-in network
    _, _, collateral = adapter(names.POSTPROCESS_COLLATERAL, repository).run(phases, mask, context)
    clinical = np.array([json.dumps({"nihss": case.nihss, "age": 84, "side": "unknown"}).encode()], dtype=object)
    slabs, _, core, brain, context = adapter(names.PREPROCESS_DIFFUSION, repository).run(
        case.dwi, case.adc, case.diffusion_affine, case.diffusion_affine, clinical)
    probabilities = np.full((len(slabs), *UNET.outputs[0].dims), 0.7, np.float32)  # everything hypoperfused
    *_, hypoperfusion = adapter(names.POSTPROCESS_HYPOPERFUSION, repository).run(probabilities, core, brain, context)
    (triage,) = adapter(names.MERGE_METRICS, repository).run(collateral, hypoperfusion)
    return {names.COLLATERAL_PIPELINE: document(collateral), names.HYPOPERFUSION_PIPELINE: document(hypoperfusion),
            names.STROKE_TRIAGE: document(triage)}


@pytest.mark.parametrize("pipeline", names.PIPELINE_NAMES)
def test_the_served_document_is_a_valid_metrics_document(served_documents, pipeline):
    metrics = Metrics.model_validate(served_documents[pipeline])
    assert metrics.pipeline == pipeline
    assert (metrics.collateral is not None) == (pipeline != names.HYPOPERFUSION_PIPELINE)
    assert (metrics.hypoperfusion is not None) == (pipeline != names.COLLATERAL_PIPELINE)


def test_the_documents_carry_what_the_steps_computed(served_documents, case_right_good):
    triage = Metrics.model_validate(served_documents[names.STROKE_TRIAGE])
    h = triage.hypoperfusion
    assert h.side == "right" and h.side_inferred  # from the core
    assert h.registration.method == "verified_mni"
    # The stand-in network calls the whole brain hypoperfused: an implausible lesion, withheld, never reported.
    assert {c.name: c.verdict for c in triage.quality.checks} == {
        "registration_similarity": "pass", "template_coverage": "pass", "head_scale": "pass",
        "brain_volume_ml": "pass", "b_value": "unknown", "core_within_hemisphere": "pass", "side_matches_core": "pass",
        "hypoperfusion_within_hemisphere": "fail", "hypoperfusion_on_side": "fail",
        "core_in_training_domain": "unknown"}  # the test repository's U-Net has no model card
    assert h.defuse3 is None and not any(flag.startswith("defuse3") for flag in triage.near_threshold)
    assert triage.quality.withheld("hypoperfusion") and not triage.quality.withheld("dawn")
    assert len(triage.quality.decisions_withheld) == 2 and "larger than a hemisphere" not in \
        " ".join(triage.quality.decisions_withheld)
    withheld = h.lesion_withheld
    assert withheld is not None and withheld.status == "withheld" and withheld.drawn_ml > 800
    assert all("outside what the network was trained on" in r for r in withheld.reasons)
    assert h.hypoperfusion_ml is None and h.mismatch_ml is None and h.mismatch_ratio is None
    assert not h.lesion_reported and "WITHHELD" not in h.volumes_text and "withheld" in h.volumes_text
    assert h.core_ml == pytest.approx(case_right_good.truth["core_ml"], rel=0.1)
    assert set(triage.models) == {names.MROD_NET, names.HYPOPERFUSION_UNET}
    assert {"preprocess_perfusion", "postprocess_collateral", "preprocess_diffusion",
            "postprocess_hypoperfusion"} <= set(triage.timings_ms)


def test_a_drifted_document_is_refused_by_the_schema(served_documents):
    """The check above can fail: a field the schema does not know, or one it needs, breaks validation."""
    drifted = json.loads(json.dumps(served_documents[names.STROKE_TRIAGE]))
    drifted["hypoperfusion"]["lesion_ml"] = 1.0
    with pytest.raises(ValidationError, match="lesion_ml"):
        Metrics.model_validate(drifted)
    del drifted["hypoperfusion"]["lesion_ml"], drifted["collateral"]["cps_estimate"]
    with pytest.raises(ValidationError, match="cps_estimate"):
        Metrics.model_validate(drifted)


def test_a_diffusion_step_without_its_template_does_not_load(tmp_path):
    """The server must fail at start-up, with the reason, rather than answer requests it cannot register."""
    step = next(s for s in python_steps(MROD, UNET) if s.name == names.PREPROCESS_DIFFUSION)
    config = {"name": step.name, "input": [{"name": t.name} for t in step.inputs],
              "output": [{"name": t.name} for t in step.outputs], "parameters": {}}
    with pytest.raises(RuntimeError, match="registration template .* is missing"):
        STEPS[step.name]().initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path),
                                       "model_version": "1"})


def _hypoperfusion_document(case, repository) -> dict:
    clinical = np.array([json.dumps({"nihss": case.nihss, "age": 70, "side": "unknown"}).encode()], dtype=object)
    slabs, _, core, brain, context = adapter(names.PREPROCESS_DIFFUSION, repository).run(
        case.dwi, case.adc, case.diffusion_affine, case.diffusion_affine, clinical)
    ramp = np.linspace(0.0, 0.9, 128, dtype=np.float32)[None, None, None, None, :]  # a probability across the head
    shape = (len(slabs), *UNET.outputs[0].dims)
    # A little noise so that few voxels tie at the calibrated cut; the same bytes on every call.
    probabilities = (ramp + np.random.default_rng(0).uniform(0, 0.01, size=shape)).astype(np.float32)
    *_, doc = adapter(names.POSTPROCESS_HYPOPERFUSION, repository).run(probabilities, core, brain, context)
    served = document(doc)
    Metrics.model_validate(served)
    return served["hypoperfusion"]


def test_the_u_nets_volume_calibration_travels_from_its_model_json_to_the_lesion(case_right_good, tmp_path):
    """model.json (from the weights' card) -> the postprocessing step -> a lesion of the calibrated volume."""
    plain = _hypoperfusion_document(case_right_good, tmp_path / "plain")
    assert plain["lesion_rule"]["calibrated"] is False and plain["lesion_rule"]["probability_threshold"] == 0.5
    calibration = {"coefficients": {"intercept": 0.0, "network": 0.5, "core": 0.0, "nihss": 0.0},
                   "fitted_on": "a test"}  # V = sqrt(1 + V_net) - 1: far smaller
    folder = tmp_path / "calibrated" / UNET.triton_name / "1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"preset": "tiny", "lesion_calibration": calibration}))
    calibrated = _hypoperfusion_document(case_right_good, tmp_path / "calibrated")
    rule = calibrated["lesion_rule"]
    assert rule["calibrated"] and rule["network_ml"] == plain["hypoperfusion_ml"]
    expected = max(np.sqrt(1.0 + plain["hypoperfusion_ml"]) - 1.0, calibrated["core_ml"])
    assert calibrated["hypoperfusion_ml"] == pytest.approx(expected, abs=0.5)
    assert rule["probability_threshold"] > 0.5
    (folder / "model.json").write_text(json.dumps({"lesion_calibration": {"coefficients": {"intercept": 1}}}))
    with pytest.raises(RuntimeError, match="model card of .*calibration"):
        adapter(names.POSTPROCESS_HYPOPERFUSION, tmp_path / "calibrated")


def test_the_u_nets_training_domain_travels_from_its_model_json_to_the_gate(case_right_good, tmp_path):
    """model.json (from the weights' card) -> the postprocessing step -> the lesion and DEFUSE 3 withheld for a core
    below the domain, DAWN kept (it does not read the U-Net); a broken domain stops the step at load."""
    case = case_right_good
    folder = tmp_path / UNET.triton_name / "1"
    folder.mkdir(parents=True)
    clinical = np.array([json.dumps({"nihss": case.nihss, "age": 70, "side": "unknown"}).encode()], dtype=object)
    for smallest, inside in ((case.truth["core_ml"] / 4.0, True), (case.truth["core_ml"] * 4.0, False)):
        (folder / "model.json").write_text(json.dumps({"training_domain": {"core_ml": {"min": smallest}}}))
        slabs, _, core, brain, context = adapter(names.PREPROCESS_DIFFUSION, tmp_path).run(
            case.dwi, case.adc, case.diffusion_affine, case.diffusion_affine, clinical)
        probabilities = np.zeros((len(slabs), *UNET.outputs[0].dims), np.float32)  # the lesion is the core alone
        *_, doc = adapter(names.POSTPROCESS_HYPOPERFUSION, tmp_path).run(probabilities, core, brain, context)
        metrics = Metrics.model_validate(document(doc))
        gate = next(c for c in metrics.quality.checks if c.name == "core_in_training_domain")
        assert gate.verdict == ("pass" if inside else "fail") and gate.withholds == ["hypoperfusion", "defuse3"]
        assert (metrics.hypoperfusion.defuse3 is not None) == inside and metrics.hypoperfusion.dawn is not None
        assert metrics.hypoperfusion.lesion_reported == inside
        assert metrics.quality.withheld("defuse3") != inside and not metrics.quality.withheld("dawn")
    assert f"{case.truth['core_ml'] * 4.0:.2f} mL or more" in gate.reason
    (folder / "model.json").write_text(json.dumps({"training_domain": {"core_ml": {"min": -2}}}))
    with pytest.raises(RuntimeError, match="model card of .*>= 0 mL"):
        adapter(names.POSTPROCESS_HYPOPERFUSION, tmp_path)


@pytest.mark.parametrize("card, version", [({"modalities": ["dce", "dsc"], "dsc_conversion": "2"}, "2"),
                                           ({"modalities": ["dce", "dsc"]}, "1"),  # a card from before the field
                                           ({"modalities": ["dce"]}, "2")])  # no DSC seen: the current one
def test_the_perfusion_step_converts_dsc_as_the_served_weights_were_trained(card, version, tmp_path):
    """model.json (from the weights' card) -> the preprocessing step -> the DSC conversion of that version."""
    from collat_ensemble.phantom import generate_case
    from collat_ensemble.preprocess import prepare_perfusion

    case = generate_case(3, modality="dsc")
    folder = tmp_path / MROD.triton_name / "1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(card))
    step = adapter(names.PREPROCESS_PERFUSION, tmp_path)
    x, _, _ = step.run(case.perfusion, case.perfusion_affine, np.array([case.frame_seconds], np.float32))
    grid = {"frames": 60, "frame_interval": 1.6, "slices": 12, "height": 64, "width": 64}
    expected = {v: prepare_perfusion(case.perfusion, case.perfusion_affine, case.frame_seconds, **grid,
                                     register=False, dsc_conversion=v).network_input for v in ("1", "2")}
    assert step.dsc_conversion == version
    np.testing.assert_allclose(x[0], expected[version], atol=1e-5)
    assert not np.allclose(expected["1"], expected["2"], atol=1e-3)  # the versions differ: the check can fail


def test_the_networks_own_cps_rule_travels_from_its_model_json_to_the_grade(tmp_path):
    """model.json (from the 3D-MROD-Net's card) -> the collateral postprocessing -> the grade by that rule, and the
    rule stays out of the document; a broken rule stops the step at load."""
    from collat_ensemble.phantom import generate_case

    case = generate_case(202)
    x, mask, context = adapter(names.PREPROCESS_PERFUSION, tmp_path / "pre").run(
        case.perfusion, case.perfusion_affine, np.array([case.frame_seconds], np.float32))
    # Stand-in maps: brightness 0.8 everywhere, half as bright on one side in the three CPS phases.
    phases = np.full((1, 5, *x.shape[2:]), 0.6, np.float32)
    phases[:, 1:4, ..., : x.shape[-1] // 2] = (0.6 - 1.0) / 2.0
    grades = {}
    for name, ratios in (("default", None), ("lenient", (0.95, 0.95, 0.95)), ("capillary only", (0.3, 0.6, 0.6))):
        folder = tmp_path / name / MROD.triton_name / "1"
        folder.mkdir(parents=True)
        card = {"modalities": ["dce", "dsc"]}
        if ratios is not None:
            card["cps_rule"] = {"ratios": dict(zip(("capillary", "early_venous", "late_venous"), ratios, strict=True)),
                                "floor": 0.1, "fitted_on": "a test"}
        (folder / "model.json").write_text(json.dumps(card))
        *_, doc = adapter(names.POSTPROCESS_COLLATERAL, tmp_path / name).run(phases, mask, context.copy())
        served = document(doc)
        assert "cps_rule" not in served["models"][MROD.triton_name]
        grades[name] = Metrics.model_validate(served).collateral
    assert grades["default"].cps_estimate == 0 and min(grades["default"].hypoperfused_fraction.values()) > 0.9
    # half as bright is not 95 % darker than the mirror
    assert grades["lenient"].cps_estimate == 5 and max(grades["lenient"].hypoperfused_fraction.values()) == 0.0
    # each phase by its own ratio: half as bright counts as darker than 70 % of the mirror, not than 40 %
    fractions = grades["capillary only"].hypoperfused_fraction
    assert grades["capillary only"].cps_estimate == 3 and fractions["capillary"] > 0.9
    assert fractions["early_venous"] == fractions["late_venous"] == 0.0
    folder = tmp_path / "default" / MROD.triton_name / "1"
    (folder / "model.json").write_text(json.dumps({"cps_rule": {"ratios": {"capillary": 0.3}, "floor": 0.1}}))
    with pytest.raises(RuntimeError, match="model card of mrod_net: its cps_rule: not a CPS rule"):
        adapter(names.POSTPROCESS_COLLATERAL, tmp_path / "default")


def test_an_unknown_dsc_conversion_stops_the_perfusion_step_at_load(tmp_path):
    folder = tmp_path / MROD.triton_name / "1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"modalities": ["dce", "dsc"], "dsc_conversion": "7"}))
    with pytest.raises(RuntimeError, match="model card of mrod_net: unknown DSC conversion version '7'"):
        adapter(names.PREPROCESS_PERFUSION, tmp_path)


def key_drift(value, annotation, where: str = "document") -> list[str]:
    """Where a built document's keys leave the contract's TypedDicts (a key missing, or one the contract does not
    know), walking every nested part the annotation says is one."""
    import types
    import typing

    if value is None:
        return []
    if typing.is_typeddict(annotation):
        if not isinstance(value, dict):
            return [f"{where} is {type(value).__name__}, not an object"]
        hints = typing.get_type_hints(annotation)
        drift = [f"{where}.{k} missing" for k in sorted(annotation.__required_keys__ - set(value))]
        drift += [f"{where}.{k} unknown" for k in sorted(set(value) - set(hints))]
        return drift + [d for k in value if k in hints for d in key_drift(value[k], hints[k], f"{where}.{k}")]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if typing.is_typeddict(a) or typing.get_origin(a) in (list, dict)]
        return key_drift(value, parts[0], where) if len(parts) == 1 else []
    if origin is list:
        return [d for i, item in enumerate(value) for d in key_drift(item, args[0], f"{where}[{i}]")]
    if origin is dict:
        return [d for k, item in value.items() for d in key_drift(item, args[1], f"{where}[{k}]")]
    return []


def test_the_key_check_sees_a_drifted_document(served_documents):
    from collat_contract.metrics import MetricsDocument

    drifted = json.loads(json.dumps(served_documents[names.STROKE_TRIAGE]))
    drifted["hypoperfusion"]["registration"]["angle"] = 1.0
    del drifted["quality"]["checks"][2]["reason"], drifted["collateral"]["contrast"]["kind"]
    assert key_drift(drifted, MetricsDocument) == [
        "document.collateral.contrast.kind missing", "document.hypoperfusion.registration.angle unknown",
        "document.quality.checks[2].reason missing"]


def test_the_served_documents_hold_exactly_the_contracts_keys(served_documents, case_right_good, tmp_path):
    """What the serving code builds, every nested part included, has the keys of the contract's TypedDicts
    (collat_contract.metrics): the three pipelines' documents, and one with every optional part filled (a model card
    with every field, a calibrated lesion rule, DEFUSE 3 and DAWN standing)."""
    from collat_contract.metrics import MetricsDocument, ModelProvenance
    from collat_ensemble.serving.metrics import network_model_info

    case = case_right_good
    card = {"preset": "tiny", "sha256": "0" * 64, "weights": "w.pt", "checkpoint": "c.pt", "not_for_clinical_use": True,
            "tensorrt_version": "10.0", "gpu": "a GPU", "dsc_conversion": "2", "card_sha256": "1" * 64,
            "modalities": ["dce"],
            "lesion_calibration": {"coefficients": {"intercept": 0.0, "network": 1.0, "core": 0.0, "nihss": 0.0},
                                   "fitted_on": "a test"},
            "training_domain": {"core_ml": {"min": 0.0}},
            "cps_rule": {"ratios": {"capillary": 0.4, "early_venous": 0.3, "late_venous": 0.3}, "floor": 0.1}}
    folder = tmp_path / UNET.triton_name / "1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(card))
    # every key a model card can carry into the document is one of the contract's
    assert set(network_model_info(tmp_path, UNET.triton_name)) == \
        ModelProvenance.__required_keys__ | ModelProvenance.__optional_keys__
    clinical = np.array([json.dumps({"nihss": case.nihss, "age": 70, "side": "unknown"}).encode()], dtype=object)
    slabs, _, core, brain, context = adapter(names.PREPROCESS_DIFFUSION, tmp_path).run(
        case.dwi, case.adc, case.diffusion_affine, case.diffusion_affine, clinical)
    probabilities = np.zeros((len(slabs), *UNET.outputs[0].dims), np.float32)  # the lesion is the core: gates pass
    *_, doc = adapter(names.POSTPROCESS_HYPOPERFUSION, tmp_path).run(probabilities, core, brain, context)
    full = document(doc)
    h = full["hypoperfusion"]
    assert h["defuse3"] is not None and h["dawn"] is not None and h["lesion_rule"]["calibration"] is not None
    assert set(full["models"][UNET.triton_name]) > {"name", "version", "preset", "sha256", "modalities"}
    for built in (*served_documents.values(), full):
        assert key_drift(built, MetricsDocument) == []


def test_the_summary_page_names_an_imported_networks_preset_and_card(served_documents):
    """What reaches PACS says which network and which card made the result (an imported one's METRICS carry them)."""
    from collat_client.dicom.capture import summary_lines
    from collat_client.schema import Metrics

    doc = json.loads(json.dumps(served_documents[names.HYPOPERFUSION_PIPELINE]))
    doc["models"][UNET.triton_name].update(preset="imported:keras-unet", sha256="a" * 64, card_sha256="c" * 64)
    models_line = summary_lines(Metrics.model_validate(doc))[-1][0]
    assert f"{UNET.triton_name} v1 {'a' * 12} (imported:keras-unet, card {'c' * 12})" in models_line


def test_a_withheld_lesion_is_said_and_never_drawn(served_documents, case_right_good, tmp_path):
    """The stand-in network's whole-brain lesion is withheld: the overview paints the core alone and says why, the
    summary page says it, and the report has no lesion volume or mismatch, only the lesion's withheld status."""
    import highdicom as hd
    import pydicom
    from dicom_writer import write_classic
    from PIL import Image

    from collat_client.dicom.capture import summary_lines
    from collat_client.dicom.report import build_report
    from collat_client.imaging.overview import render_overview
    from collat_client.imaging.volumes import MapImage, Volume

    case, metrics = case_right_good, Metrics.model_validate(served_documents[names.STROKE_TRIAGE])
    dwi = Volume(case.dwi, case.diffusion_affine)
    everywhere, core = MapImage((case.dwi > 0).astype(np.uint8), dwi), MapImage(case.core.astype(np.uint8), dwi)
    for name, shown in (("withheld", metrics), ("reported", None)):
        shown = shown or Metrics.model_validate({**served_documents[names.STROKE_TRIAGE], "hypoperfusion": {
            **served_documents[names.STROKE_TRIAGE]["hypoperfusion"], "hypoperfusion_ml": 900.0, "mismatch_ml": 1.0,
            "mismatch_ratio": 2.0, "lesion_withheld": None}})
        render_overview(tmp_path / f"{name}.png", shown, lesion=everywhere, core=core, dwi=dwi)
        rgb = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)
        amber = int(((rgb[..., 0] - rgb[..., 2] > 90) & (rgb[..., 1] - rgb[..., 2] > 60)).sum())
        assert (amber == 0) == (name == "withheld"), name  # the same mask, drawn only when it is reported
    assert any(text.startswith("hypoperfusion withheld: ") for text, _ in summary_lines(metrics))
    source = write_classic(tmp_path / "dwi", np.round(case.dwi[..., 28:31]).astype(np.int16), case.diffusion_affine)
    evidence = [pydicom.dcmread(str(next(p for p in source.rglob("*") if p.is_file())))]
    build_report(metrics, evidence, algorithm="collat", version="1", research_only=True).save_as(
        str(tmp_path / "sr.dcm"))
    sr = hd.sr.srread(str(tmp_path / "sr.dcm"))
    measured = {m.name.meaning for g in sr.content.get_image_measurement_groups() for m in g.get_measurements()}
    findings = {g.finding_type.meaning for g in sr.content.get_image_measurement_groups()}
    evaluations = {q.name.meaning: q.value.meaning for g in sr.content.get_image_measurement_groups()
                   for q in g.get_qualitative_evaluations()}
    assert "Predicted hypoperfusion lesion" not in findings and not {"Mismatch volume", "Mismatch ratio"} & measured
    assert evaluations["Predicted hypoperfusion lesion"] == "Withheld: failed a plausibility check"
    assert evaluations["DEFUSE 3 target mismatch"].startswith("Withheld")

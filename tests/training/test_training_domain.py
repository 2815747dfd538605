"""The U-Net weights' training domain: measured from their training cases, recorded in the card, read by the gate."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from collat_ensemble.phantom import draw_kind, generate_case
from collat_ensemble.quality import TrainingDomain, core_domain_check, lesion_domain_check
from collat_export.onnx_export import training_domain
from collat_export.training.cli import main as train_cli
from collat_export.training.domain import domain_document, lesion_envelope, training_volumes
from collat_export.weights import demo_checkpoint


def test_the_volumes_are_the_training_cases_own_and_the_document_their_range():
    seeds = [1000000, 1000001]
    volumes = training_volumes(seeds, "mixed", "mixed")
    cases = [generate_case(1000000, kind=draw_kind(1000000)), generate_case(1000001, space="native",
                                                                            kind=draw_kind(1000001))]
    assert volumes == [(c.truth["core_ml"], c.truth["hypoperfusion_ml"]) for c in cases]
    doc = domain_document(seeds, volumes, "mixed")
    cores = [core for core, _ in volumes]
    assert doc["core_ml"]["min"] == round(min(cores), 3) and doc["core_ml"]["max"] == round(max(cores), 3)
    assert "seeds 1000000-1000001" in doc["cases"] and "kinds mixed" in doc["cases"]
    domain = TrainingDomain.from_dict(doc)  # the server reads what is written
    assert domain.min_core_ml == round(min(cores), 3) and domain.lesion_by_core
    with pytest.raises(ValueError, match="one \\(core, lesion\\) volume pair per training case"):
        domain_document(seeds, volumes[:1])


def test_the_envelope_is_the_largest_lesion_around_cores_up_to_each_bound():
    envelope = lesion_envelope([(0.0, 0.0), (0.3, 2.0), (0.9, 80.0), (20.0, 300.0)])
    assert envelope["0.1"] == 0.0 and envelope["0.25"] == 0.0 and envelope["0.5"] == 2.0
    assert envelope["0.75"] == 2.0 and envelope["1"] == 80.0 and envelope["15"] == 80.0
    assert envelope["20"] == 300.0 and envelope["300"] == 300.0
    assert lesion_envelope([(2.0, 50.0)]) == {k: 50.0 for k in ("2", "3", "5", "7.5", "10", "15", "20", "30", "50",
                                                                 "75", "100", "150", "200", "300")}


def test_the_shipped_u_net_carries_its_domain_to_model_json_and_its_gate_passes_what_it_was_trained_on():
    doc = training_domain(str(demo_checkpoint("hypo")), "hypo")
    assert doc is not None and training_domain(str(demo_checkpoint("mrod")), "mrod") is None
    domain = TrainingDomain.from_dict(doc)
    # Phantom version 4's mix: mimics and chronic infarcts have no core, MCA strokes up to a hemisphere's.
    assert domain.min_core_ml == 0.0 and doc["core_ml"]["max"] > 100.0 and "phantom version 4" in doc["cases"]
    assert core_domain_check(0.0, domain).verdict == "pass"
    envelope = dict(domain.lesion_by_core)
    assert envelope[0.1] < 1.0 and envelope[300.0] > 200.0
    assert list(envelope.values()) == sorted(envelope.values())  # a larger core bound holds every smaller one's
    # A normal brain drawn as a territorial stroke is outside it; a lacune's few mL and a large MCA stroke are not.
    assert lesion_domain_check(150.0, 0.0, domain).verdict == "fail"
    assert lesion_domain_check(2.0, 0.2, domain).verdict == "pass"
    assert lesion_domain_check(180.0, 40.0, domain).verdict == "pass"


def test_the_domain_command_refuses_a_card_it_cannot_measure(tmp_path):
    card = json.loads(demo_checkpoint("hypo").with_name("model_card.json").read_text())
    trained = {"seeds": [1000000, 1000009], "kinds": "mixed"}
    for name, change, words in (("mrod", {"model": "mrod", "training": trained}, "recorded for U-Net weights"),
                                ("v2", {"training": {**trained, "phantom_version": "2"}}, "version 2"),
                                ("none", {"training": {}}, "no model card with the training seeds"),
                                ("average", {"training": {"interpolated_from": []}}, "an average of checkpoints")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_card.json").write_text(json.dumps({**card, **change}))
        shutil.copy(demo_checkpoint("hypo"), folder / "checkpoint.pt")
        result = CliRunner().invoke(train_cli, ["domain", "--checkpoint", str(folder / "checkpoint.pt")])
        assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.output

"""The U-Net weights' training domain: measured from their training cases, recorded in the card, read by the gate."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from collat_ensemble.phantom import generate_case
from collat_ensemble.quality import TrainingDomain, core_domain_check
from collat_export.onnx_export import training_domain
from collat_export.training.cli import main as train_cli
from collat_export.training.domain import domain_document, training_core_volumes
from collat_export.weights import demo_checkpoint


def test_the_cores_are_the_training_cases_own_and_the_document_their_range():
    seeds = [1000000, 1000001]
    cores = training_core_volumes(seeds, "mixed")
    assert cores == [generate_case(1000000).truth["core_ml"], generate_case(1000001, space="native").truth["core_ml"]]
    doc = domain_document(seeds, cores)
    assert doc["core_ml"]["min"] == round(min(cores), 3) and doc["core_ml"]["max"] == round(max(cores), 3)
    assert "seeds 1000000-1000001" in doc["cases"]
    assert TrainingDomain.from_dict(doc).min_core_ml == round(min(cores), 3)  # the server reads what is written
    with pytest.raises(ValueError, match="one core volume per training case"):
        domain_document(seeds, cores[:1])


def test_the_shipped_u_net_carries_its_domain_to_model_json_and_the_held_out_cores_pass_it():
    doc = training_domain(str(demo_checkpoint("hypo")), "hypo")
    assert doc is not None and training_domain(str(demo_checkpoint("mrod")), "mrod") is None
    domain = TrainingDomain.from_dict(doc)
    assert 0.5 <= domain.min_core_ml <= 2.0 and doc["core_ml"]["max"] > 100.0  # 320 phantom cases: 0.87-199 mL
    # The smallest held-out core of seeds 0-199 (seed 156, 0.77 mL measured) stays inside: the gate costs the
    # phantom figures no decision, and a scan with no core fails it.
    assert core_domain_check(0.77, domain).verdict == "pass" and core_domain_check(0.0, domain).verdict == "fail"


def test_the_domain_command_refuses_a_card_it_cannot_measure(tmp_path):
    card = json.loads(demo_checkpoint("hypo").with_name("model_card.json").read_text())
    for name, change, words in (("mrod", {"model": "mrod"}, "recorded for U-Net weights"),
                                ("v2", {"training": {**card["training"], "phantom_version": "2"}}, "version 2"),
                                ("none", {"training": {}}, "no model card with the training seeds")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_card.json").write_text(json.dumps({**card, **change}))
        shutil.copy(demo_checkpoint("hypo"), folder / "checkpoint.pt")
        result = CliRunner().invoke(train_cli, ["domain", "--checkpoint", str(folder / "checkpoint.pt")])
        assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.output

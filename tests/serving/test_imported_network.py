"""A network trained elsewhere, imported with its card, served by the real tritonserver: the built-in U-Net re-laid
as a Keras export (channels-last, renamed tensors, its own NIHSS scale) gives exactly what the built-in one gives."""

from __future__ import annotations

import numpy as np
import pytest
from foreign_networks import relaid_unet
from serving_helpers import build_cpu_repository, case_arrays, infer

from collat_ensemble.server.launcher import TritonServer


@pytest.fixture(scope="module")
def imported_server(cpu_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    foreign = relaid_unet(cpu_repository / "hypoperfusion_unet" / "1" / "model.onnx", folder)
    repository = build_cpu_repository(folder / "model_repository", mrod_preset="tiny", hypo_card=foreign.card)
    with TritonServer(repository, log_file=folder / "tritonserver.log") as running:
        yield running


def test_the_imported_network_gives_the_built_in_networks_lesion_volumes_and_decisions(server, imported_server,
                                                                                          left_case):
    import tritonclient.http as http

    arrays = case_arrays(left_case, age=70)
    results = []
    for running in (server, imported_server):
        client = http.InferenceServerClient(running.http_url, network_timeout=600.0, connection_timeout=600.0)
        results.append(infer(client, "hypoperfusion_pipeline", arrays))
    built_in, imported = results
    np.testing.assert_allclose(imported["HYPOPERFUSION_PROB"], built_in["HYPOPERFUSION_PROB"], atol=1e-4)
    np.testing.assert_array_equal(imported["LESION_MASK"], built_in["LESION_MASK"])
    a, b = built_in["METRICS"]["hypoperfusion"], imported["METRICS"]["hypoperfusion"]
    for key in ("core_ml", "hypoperfusion_ml", "mismatch_ml", "mismatch_ratio", "defuse3", "dawn"):
        assert b[key] == pytest.approx(a[key], abs=0.05) if isinstance(a[key], float) else b[key] == a[key], key
    model = imported["METRICS"]["models"]["hypoperfusion_unet"]
    assert model["preset"] == "imported:keras-unet" and len(model["card_sha256"]) == 64
    assert model["not_for_clinical_use"] is True


def test_two_versions_are_ready_side_by_side_and_a_policy_rolls_back(cpu_repository, server, left_case,
                                                                      tmp_path):
    """The re-laid U-Net added as version 2 beside the demo weights' version 1: both load, the pipelines serve the
    newer, `collat-client models` lists both with their provenance, and pinning the policy to 1 rolls back."""
    import json
    import shutil
    import subprocess
    import sys

    import tritonclient.http as http
    from click.testing import CliRunner

    from collat_client import CollatClient, Volume
    from collat_client.apps.cli import main as client_cli
    from collat_export.cli import main as export_cli

    repository = tmp_path / "model_repository"
    shutil.copytree(cpu_repository, repository, symlinks=True)
    foreign = relaid_unet(cpu_repository / "hypoperfusion_unet" / "1" / "model.onnx", tmp_path)
    added = CliRunner().invoke(export_cli, ["add-version", "--repository", str(repository), "--hypo-card",
                                            str(foreign.card), "--policy", "all"])
    assert added.exit_code == 0, added.output
    arrays = case_arrays(left_case, age=70)
    with TritonServer(repository, log_file=tmp_path / "v2.log") as running:
        client = http.InferenceServerClient(running.http_url, network_timeout=600.0, connection_timeout=600.0)
        assert [v for v in ("1", "2") if client.is_model_ready("hypoperfusion_unet", v)] == ["1", "2"]
        models = CliRunner().invoke(client_cli, ["models", "--json", "--url", running.http_url])
        assert models.exit_code == 0, models.output
        unet = next(r for r in json.loads(models.output) if r["name"] == "hypoperfusion_unet")
        assert [(v["version"], v["ready"], v["served"]) for v in unet["versions"]] == [("1", True, False),
                                                                                          ("2", True, True)]
        assert unet["versions"][1]["provenance"].startswith("imported:keras-unet ")
        served = infer(client, "hypoperfusion_pipeline", arrays)["METRICS"]
        with CollatClient(running.http_url) as sdk:  # a request pinned to the earlier version, as SDK and CLI say it
            dwi, adc = Volume(left_case.dwi, left_case.diffusion_affine), Volume(left_case.adc,
                                                                                 left_case.diffusion_affine)
            pinned = sdk.infer(dwi=dwi, adc=adc, clinical={"nihss": left_case.nihss, "age": 70, "side": "left"},
                               model_version={"hypoperfusion_unet": 1}).metrics
    assert pinned.models["hypoperfusion_unet"].version == "1" and pinned.models["hypoperfusion_unet"].preset == "tiny"
    model = served["models"]["hypoperfusion_unet"]
    assert model["version"] == "2" and model["preset"] == "imported:keras-unet" and "card_sha256" in model
    rolled = subprocess.run([sys.executable, "-m", "collat_export.cli", "version-policy", "--repository",
                             str(repository), "--model", "hypo", "--policy", "specific:1"], capture_output=True,
                            text=True)
    assert rolled.returncode == 0, rolled.stderr
    with TritonServer(repository, log_file=tmp_path / "v1.log") as running:
        client = http.InferenceServerClient(running.http_url, network_timeout=600.0, connection_timeout=600.0)
        assert not client.is_model_ready("hypoperfusion_unet", "2")
        back = infer(client, "hypoperfusion_pipeline", arrays)["METRICS"]
    assert back["models"]["hypoperfusion_unet"]["version"] == "1" and "card_sha256" not in \
        back["models"]["hypoperfusion_unet"]
    assert back["hypoperfusion"]["hypoperfusion_ml"] == pytest.approx(served["hypoperfusion"]["hypoperfusion_ml"],
                                                                      abs=0.05)

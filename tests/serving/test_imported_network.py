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

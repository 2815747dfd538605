"""Dynamic batching really merges concurrent patients; bad requests get named errors and the server keeps serving."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving_helpers import case_arrays, infer
from tritonclient.utils import InferenceServerException


def batch_sizes(server, model: str) -> dict[int, int]:
    """Executed batch size -> number of executions, from Triton's statistics."""
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/stats", timeout=10) as r:
        stats = json.loads(r.read())["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def test_concurrent_patients_are_merged_into_one_unet_batch(server, http_client, grpc_client, left_case):
    arrays = case_arrays(left_case)
    before = batch_sizes(server, "hypoperfusion_unet")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: infer(grpc_client, "hypoperfusion_pipeline", arrays), range(8)))
    after = batch_sizes(server, "hypoperfusion_unet")
    new = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    executed = {size: n for size, n in new.items() if n > 0}
    # One patient is 12 slabs; a batch above 12 holds slabs of more than one request.
    assert max(executed) > 12, f"no merged batch: {executed}"
    assert sum(size * n for size, n in executed.items()) == 8 * 12
    cores = {r["METRICS"]["hypoperfusion"]["core_ml"] for r in results}
    assert len(cores) == 1, "batching must not change a patient's result"
    first = results[0]["HYPOPERFUSION_PROB"]
    for r in results[1:]:
        np.testing.assert_allclose(r["HYPOPERFUSION_PROB"], first, atol=1e-5)


def _error(client, pipeline: str, arrays: dict, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        infer(client, pipeline, arrays, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_are_named_and_the_server_keeps_serving(protocol, http_client, grpc_client, left_case):
    client = http_client if protocol == "http" else grpc_client
    good = case_arrays(left_case)
    series = good["PERFUSION"]
    perf = {k: good[k] for k in ("PERFUSION", "PERFUSION_AFFINE", "FRAME_SECONDS")}

    message = _error(client, "collateral_pipeline", perf, names=["PERFUSION", "PERFUSION_AFFINE"])
    assert "FRAME_SECONDS" in message

    message = _error(client, "collateral_pipeline", {**perf, "PERFUSION": series.astype(np.float64)})
    assert "PERFUSION" in message and ("FP64" in message or "data-type" in message or "datatype" in message)

    message = _error(client, "collateral_pipeline", {**perf, "PERFUSION": np.ascontiguousarray(series[..., 0])})
    assert "PERFUSION" in message

    nan = series.copy()
    nan[10, 10, 5, 3] = np.nan
    assert "NaN" in _error(client, "collateral_pipeline", {**perf, "PERFUSION": nan})

    assert "too few frames: 5" in _error(client, "collateral_pipeline",
                                         {**perf, "PERFUSION": np.ascontiguousarray(series[..., :5])})

    singular = good["PERFUSION_AFFINE"].copy()
    singular[:3, 2] = 0.0
    assert "singular" in _error(client, "collateral_pipeline", {**perf, "PERFUSION_AFFINE": singular})

    flat = np.full_like(series, 100.0)
    assert "constant" in _error(client, "collateral_pipeline", {**perf, "PERFUSION": flat})

    clinical = np.array([json.dumps({"nihss": -3, "side": "left"}).encode()], dtype=np.object_)
    assert "CLINICAL: nihss must be an integer 0-42, got -3" in _error(client, "hypoperfusion_pipeline",
                                                                       {**good, "CLINICAL": clinical})

    small = good["ADC"][:40]
    assert "do not share a grid" in _error(client, "hypoperfusion_pipeline", {**good, "ADC": small})

    # ... and the next good request is answered.
    out = infer(client, "collateral_pipeline", perf)
    assert out["COLLATERAL_MAPS"].shape == series.shape[:3] + (5,)


def test_server_is_live_and_ready_after_the_bad_requests(server, http_client):
    assert http_client.is_server_live() and http_client.is_server_ready()
    for name in ("collateral_pipeline", "hypoperfusion_pipeline", "stroke_triage"):
        assert http_client.is_model_ready(name)


def test_restricted_apis_and_model_control_are_closed(server):
    request = urllib.request.Request(f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code in (400, 403)

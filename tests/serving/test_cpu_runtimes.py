"""OpenVINO serves the networks on the CPU when it is installed; a server forced onto ONNX Runtime (a machine
without OpenVINO) still serves, and both return the same maps and metrics up to float rounding. Left to choose, the
server runs a network in BF16 where the CPU has the units and the model card accepts it, with the same decisions."""

from __future__ import annotations

import numpy as np
import pytest

from collat_client.imaging.volumes import Volume
from collat_client.schema import Clinical
from collat_client.sdk.client import CollatClient
from collat_ensemble.server.launcher import TritonServer
from collat_ensemble.server.network_model import PRECISION_VARIABLE, RUNTIME_VARIABLE, cpu_capabilities


def _infer(url: str, case):
    with CollatClient(url) as client:
        return client.infer(perfusion=Volume(case.perfusion, case.perfusion_affine, case.frame_seconds),
                            dwi=Volume(case.dwi, case.diffusion_affine), adc=Volume(case.adc, case.diffusion_affine),
                            clinical=Clinical(nihss=case.nihss, age=case.age, side="left", dwi_b_value=1000))


def test_openvino_serves_and_the_onnxruntime_fallback_returns_the_same_results(server, cpu_repository, left_case,
                                                                             tmp_path, monkeypatch):
    log = server.log_tail(10**6)
    for network in ("mrod_net", "hypoperfusion_unet"):
        assert f"{network}: openvino " in log, f"{network} did not load in OpenVINO"
    served = _infer(server.http_url, left_case)
    monkeypatch.setenv(RUNTIME_VARIABLE, "onnxruntime")
    with TritonServer(cpu_repository, log_file=tmp_path / "onnxruntime.log") as fallback:
        assert "hypoperfusion_unet: onnxruntime " in fallback.log_tail(10**6)
        other = _infer(fallback.http_url, left_case)
    np.testing.assert_allclose(served.collateral_maps.data, other.collateral_maps.data, atol=1e-4)
    np.testing.assert_allclose(served.hypoperfusion_prob.data, other.hypoperfusion_prob.data, atol=1e-4)
    a, b = served.metrics, other.metrics
    assert a.hypoperfusion.core_ml == b.hypoperfusion.core_ml  # the ADC's, no network involved
    assert a.hypoperfusion.hypoperfusion_ml == pytest.approx(b.hypoperfusion.hypoperfusion_ml, abs=0.05)
    assert a.hypoperfusion.defuse3 == b.hypoperfusion.defuse3 and a.collateral.cps_estimate == b.collateral.cps_estimate
    for phase, fraction in a.collateral.hypoperfused_fraction.items():
        assert fraction == pytest.approx(b.collateral.hypoperfused_fraction[phase], abs=1e-3)


def test_left_to_choose_the_server_runs_bf16_only_where_the_cpu_and_the_card_allow(server, cpu_repository,
                                                                                   left_case, tmp_path, monkeypatch):
    """The machine decides which path this test takes (a CPU with VNNI, where a card accepts int8 and its IR is
    shipped: INT8; an AMD Zen 4 or an Intel with AVX-512 BF16 or AMX: BF16; older CPUs: FP32), and says it; every
    path gives the FP32 server's decisions."""
    import json

    served = _infer(server.http_url, left_case)  # the session's server: FP32
    monkeypatch.delenv(PRECISION_VARIABLE)
    caps = set(cpu_capabilities())
    has_bf16 = "BF16" in caps
    with TritonServer(cpu_repository, log_file=tmp_path / "auto.log") as chosen:
        log = chosen.log_tail(10**6)
        other = _infer(chosen.http_url, left_case)
    lower = False
    for network in ("mrod_net", "hypoperfusion_unet"):
        meta = json.loads((cpu_repository / network / "1" / "model.json").read_text())
        accepted = meta["accepted_precisions"]
        expected = "INT8" if "int8" in accepted and meta.get("int8_model") and {"INT8", "VNNI"} <= caps else \
            "BF16" if has_bf16 and "bf16" in accepted else "FP32"
        lower = lower or expected != "FP32"
        print(f"{network}: {expected} on this CPU")
        line = next(x for x in log.splitlines() if f"{network}: openvino " in x)
        assert f"on the CPU, {expected} (" in line, line
    difference = np.abs(served.collateral_maps.data - other.collateral_maps.data)
    if lower:  # BF16's rounding: a few voxels of the maps' range of 2 move by 0.1, the maps as a whole 0.002 on average
        assert float(difference.max()) < 0.15 and float(difference.mean()) < 0.005, (difference.max(),
                                                                                     difference.mean())
    else:
        assert float(difference.max()) <= 1e-4
    a, b = served.metrics, other.metrics
    assert a.collateral.cps_estimate == b.collateral.cps_estimate and a.hypoperfusion.defuse3 == b.hypoperfusion.defuse3
    # BF16's or INT8's rounding moves a 235 mL lesion's edge by about 1 %; FP32 against FP32 agrees to rounding.
    volume = pytest.approx(b.hypoperfusion.hypoperfusion_ml, rel=0.02) if lower else \
        pytest.approx(b.hypoperfusion.hypoperfusion_ml, abs=0.05)
    assert a.hypoperfusion.hypoperfusion_ml == volume

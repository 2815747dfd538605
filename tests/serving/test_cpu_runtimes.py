"""OpenVINO serves the networks on the CPU when it is installed; a server forced onto ONNX Runtime (a machine
without OpenVINO) still serves, and both return the same maps and metrics up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from collat_client.imaging.volumes import Volume
from collat_client.schema import Clinical
from collat_client.sdk.client import CollatClient
from collat_ensemble.server.launcher import TritonServer
from collat_ensemble.server.network_model import RUNTIME_VARIABLE


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

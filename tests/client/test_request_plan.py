"""One request plan for the CLI, the SDK and the DICOM node; the sync and async clients send it alike (no server:
an injected transport records what would go on the wire)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from collat_client import AsyncCollatClient, CollatClient, InvalidInput, QueueFull, Study
from collat_client.dicom.study import Chosen
from collat_client.sdk.plan import plan_request
from collat_client.sdk.transport.base import Busy

AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


def _series() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(100, 200, size=(8, 8, 6, 30)).astype(np.float32)


def _study(*, perfusion: bool = True, diffusion: bool = True) -> Study:
    volume = np.random.default_rng(1).uniform(500, 900, size=(8, 8, 6)).astype(np.float32)
    return Study(Path("/studies/one"),
                 perfusion=Chosen("5 DSC", _series(), AFFINE, frame_seconds=1.6,
                                  files=(Path("/studies/one/5/1.dcm"),)) if perfusion else None,
                 dwi=Chosen("7 TRACEW", volume, AFFINE, b_value=1000.0) if diffusion else None,
                 adc=Chosen("8 ADC", volume * 1e-6, AFFINE) if diffusion else None)


def test_a_study_with_every_series_and_the_nihss_goes_to_stroke_triage():
    plan = plan_request(study=_study(), clinical={"nihss": 12, "side": "left"})
    assert plan.pipeline == "stroke_triage" and plan.notes == []
    assert set(plan.volumes) == {"perfusion", "dwi", "adc"}
    assert set(plan.tensors) == {"PERFUSION", "PERFUSION_AFFINE", "FRAME_SECONDS", "DWI", "ADC", "DWI_AFFINE",
                                 "ADC_AFFINE", "CLINICAL"}
    assert b'"dwi_b_value":1000.0' in plan.tensors["CLINICAL"][0]  # the header's b-value reaches the b-value gate
    assert "METRICS" in plan.outputs and "collateral_maps.nii.gz" in plan.output_files \
        and "lesion_mask.nii.gz" in plan.output_files


def test_a_dwi_without_the_nihss_is_refused_for_a_person_and_left_out_for_an_unattended_node():
    with pytest.raises(InvalidInput, match=r"/studies/one: the study holds a DWI \(7 TRACEW\); the hypoperfusion "
                                           r"pipeline needs clinical data \(give the NIHSS\)"):
        plan_request(study=_study())
    plan = plan_request(study=_study(), diffusion_without_clinical="skip")
    assert plan.pipeline == "collateral_pipeline" and set(plan.volumes) == {"perfusion"}
    assert plan.notes == ["no NIHSS for it, the DWI is not analysed (collaterals only)"]
    assert "lesion_mask.nii.gz" not in plan.output_files
    # DICOM results of a perfusion-only run join the study through the perfusion's own instances
    assert plan.volumes["perfusion"].dicom_files == (Path("/studies/one/5/1.dcm"),)
    second = plan_request(study=_study(), clinical={"nihss": 12}, study_perfusion=False)  # the node's second pass
    assert second.pipeline == "hypoperfusion_pipeline" and set(second.volumes) == {"dwi", "adc"}
    with pytest.raises(InvalidInput, match=r"needs clinical data \(a clinical file\)"):  # nothing left to run
        plan_request(study=_study(perfusion=False), diffusion_without_clinical="skip", clinical_hint="a clinical file")


def test_the_plan_shows_the_study_as_soon_as_it_is_read_and_refuses_series_choices_without_one(tmp_path):
    seen = []
    plan_request(study=_study(diffusion=False), on_study=seen.append)
    assert [s.perfusion.label for s in seen] == ["5 DSC"]
    with pytest.raises(InvalidInput, match="choose series in a DICOM study folder"):
        plan_request(perfusion=tmp_path / "p.nii.gz", dwi_series="7")


class RecordingTransport:
    """A stand-in for the wire: records each request, answers with ``answer`` (an exception to raise)."""

    def __init__(self, answer: Exception) -> None:
        self.answer, self.requests, self.closed = answer, [], False

    def infer(self, model, inputs, outputs, timeout):
        self.requests.append((model, sorted(inputs), outputs, timeout))
        raise self.answer

    def server_ready(self) -> bool:
        return True

    def model_ready(self, model: str, version: str = "") -> bool:
        return True

    def model_versions(self, model: str) -> list[str]:
        return ["1"]

    def model_config(self, model: str) -> dict:
        return {"name": model}

    def close(self) -> None:
        self.closed = True


class AsyncRecordingTransport(RecordingTransport):
    async def infer(self, model, inputs, outputs, timeout):
        return super().infer(model, inputs, outputs, timeout)

    async def close(self) -> None:
        self.closed = True


def _sync(transport, progress: list[str]) -> None:
    with CollatClient(transport=transport, retries=1, backoff=0.0, timeout=7.0) as client:
        client.infer(study=_study(diffusion=False), progress=progress.append)


def _async(transport, progress: list[str]) -> None:
    async def go() -> None:
        async with AsyncCollatClient(transport=transport, retries=1, backoff=0.0, timeout=7.0) as client:
            await client.infer(study=_study(diffusion=False), progress=progress.append)

    asyncio.run(go())


def test_the_sync_and_async_clients_send_the_same_plan_with_the_same_progress():
    """The async client over an asyncio transport, or over a synchronous one in a worker thread, as the sync one."""
    sent = []
    for run, transport_type in ((_sync, RecordingTransport), (_async, RecordingTransport),
                                (_async, AsyncRecordingTransport)):
        transport, progress = transport_type(InvalidInput("m: refused (HTTP 400)")), []
        with pytest.raises(InvalidInput, match="refused"):
            run(transport, progress)
        sent.append((transport.requests, progress))
        assert transport.closed
    assert sent[0] == sent[1] == sent[2]
    requests, progress = sent[0]
    assert requests == [("collateral_pipeline", ["FRAME_SECONDS", "PERFUSION", "PERFUSION_AFFINE"],
                         ["COLLATERAL_MAPS", "BRAIN_MASK", "METRICS"], 7.0)]  # a refusal is never retried
    assert progress == ["reading", "uploading to collateral_pipeline and running inference"]


@pytest.mark.parametrize("run", [_sync, _async])
def test_a_full_queue_is_retried_then_reported_as_a_full_queue(run):
    transport = RecordingTransport(Busy("m: queue full (HTTP 429)"))
    with pytest.raises(QueueFull, match=r"queue full \(HTTP 429\) \(gave up after 2 attempts\)") as info:
        run(transport, [])
    assert len(transport.requests) == 2 and not isinstance(info.value, Busy)  # the public class, not the marker


def test_a_request_pins_one_network_of_its_pipeline_to_a_version():
    plan = plan_request(study=_study(), clinical={"nihss": 12}, model_version={"hypoperfusion_unet": 2})
    assert plan.pipeline == "stroke_triage" and plan.model == "stroke_triage__hypoperfusion_unet_v2"
    assert plan_request(study=_study(diffusion=False)).model == "collateral_pipeline"
    for pin, message in (({"hypoperfusion_unet": 1, "mrod_net": 1}, "pin one network's version per request"),
                         ({"unet": 1}, "'unet' is not a network"), ({"mrod_net": "latest"}, "is not a version"),
                         ({"hypoperfusion_unet": 1}, "collateral_pipeline does not run hypoperfusion_unet")):
        with pytest.raises(InvalidInput, match=message):
            plan_request(study=_study(diffusion=False) if "collateral" in message else _study(),
                         clinical={"nihss": 12}, model_version=pin)

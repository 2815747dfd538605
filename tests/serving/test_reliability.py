"""Load and faults on the real server: a soak run, a restart in the middle of a client run, queue limits."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc
from serving_helpers import build_cpu_repository
from tritonclient.utils import InferenceServerException

from collat_client import Clinical, CollatClient, ServerUnavailable, Volume
from collat_ensemble.server.launcher import ServerError, TritonServer, free_port
from collat_ensemble.server.network_model import PRECISION_VARIABLE
from collat_ensemble.server.warmup import implausible, warmup_path
from collat_ensemble.serving.context import STUB_NUMPY_VARIABLE


@pytest.fixture(scope="module")
def restartable_repository(tmp_path_factory) -> Path:
    """With the tiny 3D-MROD-Net: what these tests load, kill and restart does not depend on the network."""
    return build_cpu_repository(tmp_path_factory.mktemp("restart") / "model_repository", mrod_preset="tiny")


@pytest.fixture(scope="module")
def soak_server(cpu_repository, tmp_path_factory):
    """What ships (the default repository, each network in the precision the server chooses on this CPU), on its
    own server: a heap no other test has used, so the memory it measures is the soak's alone."""
    server = TritonServer(cpu_repository, log_file=tmp_path_factory.mktemp("soak") / "tritonserver.log")
    with pytest.MonkeyPatch.context() as env:
        env.delenv(PRECISION_VARIABLE, raising=False)
        server.start()
    try:
        yield server
    finally:
        server.stop()


# CI's share; make bench runs 200 and reports issue 37's bar, growth after warm-up (benchmarks/soak.py). Here the
# memory must level off: after 8 to warm, one fresh-clone run of 40 grew +15.8 % where others grew under 1 %, and
# with 16 the growth came in the first half (1603 -> 1678 -> 1683 MB; 1668 -> 1682 -> 1682): the peak of tensors
# held at once (queued requests' inputs in the Python backend's shared memory, the allocator's high-water marks) is
# reached at its own time, while a leak goes on growing through the second half (one 75 MiB series kept per request:
# +1.5 GB over its 20 requests; 5 % of the server is about 4 MB a request).
SOAK_WARMUP, SOAK_REQUESTS, SOAK_CONCURRENCY = 16, 40, 4
SECOND_HALF_GROWTH = 0.05
WARM_SERVER_LIMIT_MB = 2500  # issue 37: the warm default server, both networks loaded and run


@pytest.mark.slow
def test_soak_of_the_default_repository_keeps_answers_and_memory(soak_server, left_case):
    """Whole patients (both branches) at concurrency 4: no failure, the same answer every time, and the server's
    memory (PSS of tritonserver and its stubs) within 2.5 GB once warm and after the soak, and level (within 5 %)
    through the soak's second half."""
    patient = {"perfusion": Volume(left_case.perfusion.astype(np.float32), left_case.perfusion_affine, 1.6),
               "dwi": Volume(left_case.dwi.astype(np.float32), left_case.diffusion_affine),
               "adc": Volume(left_case.adc.astype(np.float32), left_case.diffusion_affine),
               "clinical": Clinical(nihss=14, age=70, side="left")}
    with CollatClient(soak_server.http_url, timeout=300) as client:
        first = client.infer(**patient)
        reference = (first.collateral_maps.data, first.hypoperfusion_prob.data)
        with ThreadPoolExecutor(SOAK_CONCURRENCY) as pool:  # warm-up: every instance has run
            list(pool.map(lambda _: client.infer(**patient), range(SOAK_WARMUP)))
        warm = soak_server.memory()
        failures, mismatches = [], []

        def one(_: int) -> None:
            try:
                result = client.infer(**patient)
                for got, want in zip((result.collateral_maps.data, result.hypoperfusion_prob.data), reference,
                                     strict=True):
                    if not np.allclose(got, want, atol=1e-5):
                        mismatches.append(float(np.abs(got - want).max()))
            except Exception as exc:  # noqa: BLE001 - counted, then asserted
                failures.append(repr(exc))

        with ThreadPoolExecutor(SOAK_CONCURRENCY) as pool:
            list(pool.map(one, range(SOAK_REQUESTS // 2)))
        mid = soak_server.memory()
        with ThreadPoolExecutor(SOAK_CONCURRENCY) as pool:
            list(pool.map(one, range(SOAK_REQUESTS - SOAK_REQUESTS // 2)))
        after = soak_server.memory()
    assert failures == [] and mismatches == []
    figures = f"{warm.pss_mb:.0f} MB warm, {mid.pss_mb:.0f} MB halfway, {after.pss_mb:.0f} MB after"
    assert max(warm.pss_mb, after.pss_mb) <= WARM_SERVER_LIMIT_MB, f"the server holds too much: {figures}"
    assert after.pss_mb <= (1 + SECOND_HALF_GROWTH) * mid.pss_mb, f"server memory still growing: {figures}"


def test_a_restart_mid_run_ends_in_results_or_server_unavailable_never_a_hang(restartable_repository, left_case,
                                                                              tmp_path):
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    perfusion = Volume(left_case.perfusion.astype(np.float32), left_case.perfusion_affine, 1.6)
    first = TritonServer(restartable_repository, log_file=tmp_path / "first.log", **ports).start()
    outcomes: list[str] = []
    try:
        with CollatClient(first.http_url, timeout=120, retries=6, backoff=1.0) as client:
            def run() -> None:
                for _ in range(6):
                    try:
                        client.infer(perfusion=perfusion)
                        outcomes.append("ok")
                    except ServerUnavailable:
                        outcomes.append("unavailable")
                    except Exception as exc:  # noqa: BLE001 - anything else is a failure of the test
                        outcomes.append(f"other: {exc!r}")

            worker = threading.Thread(target=run)
            started = time.monotonic()
            worker.start()
            while len(outcomes) < 1 and time.monotonic() - started < 120:
                time.sleep(0.2)
            first.stop(grace=0.5)  # killed in the middle of the client run
            second = TritonServer(restartable_repository, log_file=tmp_path / "second.log", **ports).start()
            try:
                worker.join(timeout=600)
                assert not worker.is_alive(), "the client hung"
            finally:
                second.stop()
    finally:
        first.stop()
    assert len(outcomes) == 6
    assert all(o in ("ok", "unavailable") for o in outcomes), outcomes
    assert outcomes[-1] == "ok", "after the restart the retries must bring requests to completion"


def test_an_overloaded_network_refuses_quickly_with_a_clear_error(left_case, tmp_path):
    from collat_ensemble.preprocess import prepare_diffusion

    repo = build_cpu_repository(tmp_path / "repo", "--max-queue-size", "1")
    prep = prepare_diffusion(left_case.dwi, left_case.adc, left_case.diffusion_affine, nihss=10, side="left")
    with TritonServer(repo, log_file=tmp_path / "queue.log") as server:
        client = grpc.InferenceServerClient(server.grpc_url)

        def one(_: int) -> tuple[str, float]:
            image = grpc.InferInput("IMAGE", list(prep.slabs.shape), "FP32")
            image.set_data_from_numpy(prep.slabs)
            nihss = grpc.InferInput("NIHSS", list(prep.nihss.shape), "FP32")
            nihss.set_data_from_numpy(prep.nihss)
            t0 = time.monotonic()
            try:
                client.infer("hypoperfusion_unet", [image, nihss], client_timeout=300)
                return "ok", time.monotonic() - t0
            except InferenceServerException as exc:
                return str(exc), time.monotonic() - t0

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
    refused = [(m, s) for m, s in results if m != "ok"]
    assert refused, "eight concurrent 12-slab requests against a queue of one must overflow it"
    assert any(r[0] == "ok" for r in results)
    for message, _ in refused:
        assert "queue" in message.lower(), message
    slowest_ok = max(s for m, s in results if m == "ok")
    assert min(s for _, s in refused) < slowest_ok, "a refusal must come before the queue would have served it"


def test_a_server_whose_steps_cannot_read_their_tensors_never_becomes_ready(restartable_repository, tmp_path,
                                                                            monkeypatch):
    """numpy 2 beside the pip server's stub: refused by the launcher in one line, and by the steps themselves (the
    models fail to load, the server exits with the reason) when the stub's numpy is said to be older than ours."""
    monkeypatch.setattr(np, "__version__", "2.1.3")
    with pytest.raises(ServerError, match=r"numpy 2.1.3 is installed, .* built for numpy 1.x .*'numpy<2'"):
        TritonServer(restartable_repository, log_file=tmp_path / "refused.log").start()
    assert not (tmp_path / "refused.log").exists()  # refused before anything started
    monkeypatch.undo()

    class OlderStub(TritonServer):
        def environment(self) -> dict[str, str]:
            return {**super().environment(), STUB_NUMPY_VARIABLE: "0"}

    started = time.monotonic()
    with pytest.raises(ServerError, match=r"(?s)exited with code.*numpy 1\.\d+\.\d+ is installed, but .* built for "
                                          r"numpy 0\.x"):
        OlderStub(restartable_repository, log_file=tmp_path / "stub.log").start(timeout=240)
    assert time.monotonic() - started < 240


def test_a_server_that_loads_but_cannot_serve_fails_its_warm_up_with_the_reason(restartable_repository, tmp_path):
    """The start-up self-test: a warm-up case the steps refuse stands for any fault that only shows in a request."""
    repository = tmp_path / "model_repository"
    shutil.copytree(restartable_repository, repository)
    case = warmup_path(repository)
    with np.load(case) as stored:
        arrays = dict(stored)
    arrays["PERFUSION"] = np.full_like(arrays["PERFUSION"], 7)
    np.savez_compressed(case, **arrays)
    with pytest.raises(ServerError, match=r"tritonserver is up but cannot serve: the warm-up request through "
                                          r"collateral_pipeline failed: .*constant"):
        TritonServer(repository, log_file=tmp_path / "warmup.log").start()


def test_a_warm_up_answer_is_judged_on_its_volumes():
    assert implausible({"collateral": {"brain_volume_ml": 1200.0}, "hypoperfusion": None}) is None
    assert implausible({"collateral": {"brain_volume_ml": 0.0}}) == "collateral brain volume 0.0 mL"
    good = {"core_ml": 3.0, "hypoperfusion_ml": 20.0, "brain_volume_ml": 1300.0}
    assert implausible({"collateral": None, "hypoperfusion": good}) is None
    assert implausible({"hypoperfusion": {**good, "core_ml": float("nan")}}) == "hypoperfusion core_ml nan"

"""The NGC entrypoint's engine-build-and-cache logic (with a fake GPU and a fake builder) and the deployment files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from collat_ensemble.server import versions
from collat_ensemble.server.entrypoint import GpuInfo, cache_key, engine_jobs, prepare_engines, tensorrt_models
from collat_ensemble.server.launcher import tritonserver_flags
from collat_export.cli import main as cli_main
from collat_export.weights import demo_checkpoint

ROOT = Path(__file__).resolve().parents[2]
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture(scope="module")
def trt_repository(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trt") / "model_repository"
    result = CliRunner().invoke(cli_main, ["repository", "--target", "tensorrt", "--out", str(out),
                                           "--mrod-checkpoint", str(demo_checkpoint("mrod")),
                                           "--hypo-checkpoint", str(demo_checkpoint("hypo"))])
    assert result.exit_code == 0, result.output
    return out


def test_cache_key_names_gpu_model_and_tensorrt_version():
    assert cache_key(H100, "10.5.0") == "nvidia-h100-80gb-hbm3-sm90-trt10.5.0"
    assert cache_key(GpuInfo("NVIDIA L4", "8.9"), "11.0.1") == "nvidia-l4-sm89-trt11.0.1"


@pytest.mark.slow
def test_jobs_cover_both_networks_with_profiles_from_config_and_sidecar(trt_repository, tmp_path):
    assert tensorrt_models(trt_repository) == ["hypoperfusion_unet", "mrod_net"]
    jobs = {j.model: j for j in engine_jobs(trt_repository, tmp_path)}
    unet = jobs["hypoperfusion_unet"].profile
    assert unet.min["IMAGE"] == (1, 4, 16, 128, 128) and unet.max["IMAGE"] == (32, 4, 16, 128, 128)
    assert unet.max["NIHSS"] == (32, 1)
    mrod = jobs["mrod_net"].profile
    # The served fine network: its own 128x128x20 grid at the optimum, and never below 64 in-plane (its coarse path
    # halves the grid before an encoder whose total stride is 32).
    assert mrod.opt["MROD_INPUT"] == (2, 60, 20, 128, 128) and mrod.max["MROD_INPUT"] == (4, 60, 40, 256, 256)
    assert mrod.min["MROD_INPUT"] == (1, 60, 1, 64, 64)
    assert jobs["mrod_net"].plan == tmp_path / "mrod_net" / "model.plan"


@pytest.mark.slow
def test_engines_are_built_once_per_gpu_and_linked_into_a_runtime_copy(trt_repository, tmp_path):
    built_calls: list[str] = []

    def fake_build(job, out: Path) -> None:
        built_calls.append(job.model)
        out.write_bytes(f"plan of {job.model}".encode())

    cache, runtime = tmp_path / "engines", tmp_path / "runtime"
    logs: list[str] = []
    assert prepare_engines(trt_repository, cache, runtime, H100, "10.5.0", fake_build, logs.append) == \
        ["hypoperfusion_unet", "mrod_net"]
    plan = runtime / "mrod_net" / "1" / "model.plan"
    assert plan.read_bytes() == b"plan of mrod_net"
    assert plan.resolve() == (cache / cache_key(H100, "10.5.0") / "mrod_net" / "model.plan").resolve()
    assert not (trt_repository / "mrod_net" / "1" / "model.plan").exists(), "the image's repository stays untouched"
    # A restart on the same GPU model reuses the cache; another GPU model gets its own engines.
    assert prepare_engines(trt_repository, cache, runtime, H100, "10.5.0", fake_build, logs.append) == []
    assert any("cached engine" in line for line in logs)
    assert prepare_engines(trt_repository, cache, runtime, GpuInfo("NVIDIA L4", "8.9"), "10.5.0",
                           fake_build) == ["hypoperfusion_unet", "mrod_net"]
    assert built_calls.count("mrod_net") == 2


@pytest.mark.slow
def test_every_version_of_a_network_gets_its_own_engine(trt_repository, tmp_path):
    """An imported network added as version 2 (collat-export add-version) is built and linked beside version 1."""
    import shutil

    repository = tmp_path / "repo"
    shutil.copytree(trt_repository, repository)
    shutil.copytree(repository / "hypoperfusion_unet" / "1", repository / "hypoperfusion_unet" / "2")
    jobs = [(j.model, j.version) for j in engine_jobs(repository, tmp_path / "cache")]
    assert jobs == [("hypoperfusion_unet", "1"), ("hypoperfusion_unet", "2"), ("mrod_net", "1")]
    prepare_engines(repository, tmp_path / "cache", tmp_path / "runtime", H100, "10.5.0",
                    lambda job, out: out.write_bytes(f"{job.model} v{job.version}".encode()))
    for version in ("1", "2"):
        plan = tmp_path / "runtime" / "hypoperfusion_unet" / version / "model.plan"
        assert plan.read_bytes() == f"hypoperfusion_unet v{version}".encode()


@pytest.mark.slow
def test_a_failed_build_leaves_no_plan_in_the_cache(trt_repository, tmp_path):
    def broken(job, out: Path) -> None:
        out.write_bytes(b"half")
        raise RuntimeError("out of GPU memory")

    cache = tmp_path / "engines"
    with pytest.raises(RuntimeError, match="out of GPU memory"):
        prepare_engines(trt_repository, cache, tmp_path / "rt", H100, "10.5.0", broken)
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_dockerfile_pins_the_image_and_tensorrt_the_export_code_pins():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert f"ARG NGC_TRITON_TAG={versions.NGC_TRITON_TAG}" in text
    assert "FROM nvcr.io/nvidia/tritonserver:${NGC_TRITON_TAG}" in text
    assert f'"tensorrt=={versions.TENSORRT_VERSION}"' in text
    assert re.search(r"^USER 1000$", text, flags=re.M), "the serving image must not run as root"
    assert 'ENTRYPOINT ["python3", "-m", "collat_ensemble.server.entrypoint"]' in text
    server_pyproject = (ROOT / "ensemble" / "pyproject.toml").read_text()
    assert f"\"tensorrt=={versions.TENSORRT_VERSION}\"" in server_pyproject


def test_compose_reserves_a_gpu_checks_readiness_and_binds_loopback():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    gpu, cpu = compose["services"]["triton-gpu"], compose["services"]["triton-cpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["TARGET"] == "tensorrt" and cpu["build"]["args"]["TARGET"] == "openvino"
    for service in (gpu, cpu):
        assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"])
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])
        assert service["shm_size"] == "2gb"
    assert "engines:/engines" in gpu["volumes"]
    node = compose["services"]["dicom-node"]
    assert set(node["profiles"]) == {"cpu", "gpu"} and node["build"]["dockerfile"] == "docker/Dockerfile.node"
    assert all(p.startswith("127.0.0.1:") for p in node["ports"]) and "--url=triton:8000" in node["command"]
    assert "node-work:/var/lib/collat" in node["volumes"]  # the durable queue outlives the container
    assert "--web-port=8080" in node["command"] and "--web-users=/run/secrets/web-users" in node["command"]
    assert "/healthz" in " ".join(node["healthcheck"]["test"]) and node["secrets"] == ["web-users"]
    assert gpu["networks"]["default"]["aliases"] == cpu["networks"]["default"]["aliases"] == ["triton"]
    dockerfile = (ROOT / "docker" / "Dockerfile.node").read_text()
    assert re.search(r"^USER 1000$", dockerfile, flags=re.M) and "torch" not in dockerfile.replace("no torch", "")


def test_kubernetes_manifests_probe_request_a_gpu_and_autoscale():
    docs = [d for f in sorted((ROOT / "docker" / "k8s").glob("*.yaml")) if f.name != "prometheus-adapter-rule.yaml"
            for d in yaml.safe_load_all(f.read_text())]
    kinds = {d["kind"]: d for d in docs if d["metadata"]["name"].startswith("collat-triton") or
             d["kind"] == "PersistentVolumeClaim"}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"} <= set(kinds)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "collat-triton"
    rule = yaml.safe_load((ROOT / "docker" / "k8s" / "prometheus-adapter-rule.yaml").read_text())
    assert rule["rules"][0]["name"]["as"] == kinds["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"][
        "metric"]["name"]


def test_the_dicom_node_in_kubernetes_is_probed_scraped_and_keeps_its_queue():
    docs = list(yaml.safe_load_all((ROOT / "docker" / "k8s" / "dicom-node.yaml").read_text()))
    node = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = node["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert node["spec"]["replicas"] == 1 and node["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "work"
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert "--web-users=/etc/collat/web-users" in container["args"] and "--url=collat-triton:8000" in container["args"]
    assert {p["containerPort"] for p in container["ports"]} == {11112, 8080}
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["selector"] == {"app": "collat-dicom-node"}


def test_every_server_starts_with_the_safe_flags(tmp_path):
    flags = tritonserver_flags(tmp_path, host="127.0.0.1", http_port=1, grpc_port=2, metrics_port=3)
    assert "--model-control-mode=none" in flags and "--strict-readiness=true" in flags
    assert any(f.startswith("--http-restricted-api=model-repository,shared-memory,logging,trace:") for f in flags)
    assert "--http-address=127.0.0.1" in flags
    assert any("shm-default-byte-size" in f for f in flags)


def test_the_python_steps_see_this_interpreters_packages(tmp_path):
    """The stub finds its prefix via `python3` on PATH; without this a server started outside an activated venv
    cannot import numpy or collat_ensemble."""
    import sys

    from collat_ensemble.server.launcher import TritonServer

    env = TritonServer(tmp_path).environment()
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert any(p.endswith("site-packages") for p in env["PYTHONPATH"].split(":"))


def test_the_server_allocates_so_that_its_memory_stays_flat_unless_the_operator_says_otherwise(tmp_path, monkeypatch):
    """glibc's fixed mmap threshold and two arenas (the soak's +12.5 % became +0.2 %); an operator's value wins."""
    from collat_ensemble.server.launcher import MALLOC_SETTINGS, TritonServer

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    env = TritonServer(tmp_path).environment()
    assert env["MALLOC_MMAP_THRESHOLD_"] == MALLOC_SETTINGS["MALLOC_MMAP_THRESHOLD_"] == str(4 * 1024 * 1024)
    assert env["MALLOC_ARENA_MAX"] == "8"

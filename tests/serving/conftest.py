"""A real tritonserver on free loopback ports, serving the CPU repository built from the demo weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tritonclient.grpc as grpc
import tritonclient.http as http

from collat_ensemble.phantom import PhantomCase, generate_case
from collat_export.serve import TritonServer
from collat_export.weights import demo_checkpoint


def build_cpu_repository(out: Path, *extra: str) -> Path:
    subprocess.run([sys.executable, "-m", "collat_export.cli", "repository", "--target", "python-onnx",
                    "--out", str(out), "--mrod-checkpoint", str(demo_checkpoint("mrod")),
                    "--hypo-checkpoint", str(demo_checkpoint("hypo")), *extra],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def cpu_repository(tmp_path_factory) -> Path:
    return build_cpu_repository(tmp_path_factory.mktemp("repo") / "model_repository")


@pytest.fixture(scope="session")
def server(cpu_repository, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    with TritonServer(cpu_repository, log_file=log) as running:
        yield running
        if running.process is not None and running.process.poll() is not None:
            pytest.fail(f"tritonserver died during the tests:\n{running.log_tail()}")


@pytest.fixture(scope="session")
def http_client(server):
    return http.InferenceServerClient(server.http_url, concurrency=8, network_timeout=600.0,
                                      connection_timeout=600.0)


@pytest.fixture(scope="session")
def grpc_client(server):
    return grpc.InferenceServerClient(server.grpc_url)


@pytest.fixture(scope="session")
def left_case() -> PhantomCase:
    return generate_case(101, grade=1, side="left")

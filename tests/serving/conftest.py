"""A real tritonserver on free loopback ports, serving the CPU repository built from the demo weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tritonclient.grpc as grpc
import tritonclient.http as http
from serving_helpers import build_cpu_repository

from collat_ensemble.phantom import PhantomCase, generate_case
from collat_ensemble.server.launcher import TritonServer
from collat_ensemble.server.network_model import PRECISION_VARIABLE

# Every server the tests start runs its networks in FP32 (unless a test says otherwise), so that served numbers
# compare with FP32 references to float rounding on any machine; the choice of a lower precision has its own test.
os.environ[PRECISION_VARIABLE] = "fp32"


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
    return generate_case(101, strength=1, side="left")

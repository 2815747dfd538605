"""Shared test configuration: GPU-only tests are skipped with the reason, never silently."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    try:
        from collat_ensemble.server.tensorrt_build import unavailable_reason

        reason = unavailable_reason()
    except ImportError as exc:
        reason = f"collat_ensemble.server not importable: {exc}"
    if reason:
        skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}")
        for item in gpu_items:
            item.add_marker(skip)

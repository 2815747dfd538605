"""Shared test configuration: GPU-only tests are skipped with the reason, never silently; the folders that start
the real server or train networks mark their tests, so that ``make test-fast`` can leave them out."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"serving": "serving", "training": "training"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
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

"""The machine the figures come from, and the fp32 matrix-multiply peak efficiency is measured against."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from collat_export.bench import median_seconds


def describe() -> dict[str, str]:
    cpu = "unknown"
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(meminfo.read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    import onnxruntime
    import torch

    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory, "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0, CPU, Python backend)", "gpu": "none"}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best of numpy (OpenBLAS) and PyTorch on an n x n fp32 matrix product, median of ``repeats``."""
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2.0 * n ** 3
    results = {}
    for name, fn in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
        results[name] = flop / median_seconds(fn, repeats) / 1e9
    results["peak"] = max(results.values())
    return results

"""The machine the figures come from, and the matrix-multiply peaks efficiency is measured against: FP32, and BF16
(PyTorch's bfloat16 product) where the CPU has BF16 units, since a BF16 network is held to the BF16 peak."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
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

    try:
        import openvino

        openvino_version = openvino.get_version()
    except ImportError:
        openvino_version = "not installed"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory, "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "openvino": openvino_version,
            "torch": torch.__version__,
            "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0, CPU, Python backend)", "gpu": "none"}


def _product(library: str, n: int, dtype: str = "float32") -> Callable[[], object]:
    """One n x n matrix product in ``library`` (numpy: OpenBLAS; torch: its own BLAS), ready to call; ``dtype``
    ``bfloat16`` runs in PyTorch only."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    if library == "torch":
        import torch

        a, b = torch.from_numpy(a).to(getattr(torch, dtype)), torch.from_numpy(b).to(getattr(torch, dtype))
    return lambda: a @ b


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, bf16: bool = False) -> dict[str, float]:
    """Best of numpy (OpenBLAS) and PyTorch on an n x n fp32 matrix product, median of ``repeats``; with ``bf16``
    also PyTorch's bfloat16 product (``bf16_peak``)."""
    results = {name: 2.0 * n ** 3 / median_seconds(_product(name, n), repeats) / 1e9 for name in ("numpy", "torch")}
    results["peak"] = max(results.values())
    if bf16:
        results["bf16_peak"] = 2.0 * n ** 3 / median_seconds(_product("torch", n, "bfloat16"), repeats) / 1e9
    return results


def _matmul_window_gflops(library: str, seconds: float, n: int = 2048, dtype: str = "float32") -> float:
    """GFLOP/s of back-to-back n x n products for about ``seconds``: as long as a network run, so both see
    the same machine (its speed changes within seconds: 2048^3 products alone ranged 122-236 GFLOP/s here)."""
    product = _product(library, n, dtype)
    product()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count == 0:
        product()
        count += 1
    return 2.0 * n ** 3 * count / elapsed / 1e9


def interleaved_efficiency(run: Callable[[], object], flops: float, library: str,
                           rounds: int = 5, dtype: str = "float32") -> dict[str, float]:
    """A network's GFLOP/s over the matmul peak, the two measured in alternation.

    A peak taken once at the start and a network timed a minute later gave 54 % in one run and
    37 % in the next on this machine. Each round times ~1 s of matrix products (``library``: the
    faster of numpy and PyTorch at the start) and one network run back to back; the figure is
    the median of the rounds' ratios, the spread is reported with it. A BF16 network: ``dtype`` bfloat16, the
    products in PyTorch's bfloat16.
    """
    window = median_seconds(run, 1)  # also the warm-up
    ratios, seconds, peaks = [], [], []
    for _ in range(rounds):
        peaks.append(_matmul_window_gflops("torch" if dtype == "bfloat16" else library, window, dtype=dtype))
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
        ratios.append(flops / seconds[-1] / 1e9 / peaks[-1])
    return {"efficiency": statistics.median(ratios), "efficiency_min": min(ratios), "efficiency_max": max(ratios),
            "seconds": statistics.median(seconds), "gflops_rounds": flops / statistics.median(seconds) / 1e9,
            "peak_gflops_rounds": statistics.median(peaks), "rounds": rounds}

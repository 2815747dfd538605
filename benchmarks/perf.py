"""perf_analyzer (from the tritonclient 2.51.0 wheel) with real phantom inputs, and its CSV report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def binary(venv_bin: Path | None = None) -> Path:
    path = (venv_bin or Path(sys.executable).parent) / "perf_analyzer"
    if not path.is_file():
        raise FileNotFoundError("perf_analyzer not found: pip install 'tritonclient[all]==2.51.0'")
    return path


def environment() -> dict[str, str]:
    """perf_analyzer links libcudart even on CPU: take it from the nvidia-cuda-runtime-cu12 wheel."""
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime as cr

        lib = Path(list(cr.__path__)[0]) / "lib"
        env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    except ImportError:
        pass
    return env


def write_inputs(folder: Path, tensors: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """One raw file per input (perf_analyzer's binary input-data layout); returns the shapes for --shape."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = {}
    for name, value in tensors.items():
        if value.dtype == np.object_:
            (folder / name).write_bytes(value.reshape(-1)[0])
        else:
            (folder / name).write_bytes(np.ascontiguousarray(value).tobytes())
        shapes[name] = tuple(value.shape)
    return shapes


def run(model: str, url: str, inputs: Path, shapes: dict[str, tuple[int, ...]], concurrency: int, *,
        batch: int = 1, requests: int = 6, csv_path: Path, attempts: int = 2) -> dict[str, float]:
    """One perf_analyzer measurement. A second attempt covers perf_analyzer 2.51's occasional "failed to find the
    requested model version" while it reads an ensemble's statistics under load (seen once in ~40 runs here);
    the version is named explicitly (-x 1, the only one a built repository has) for the same reason. A retry counts
    twice the requests per window: at high concurrency on 2 cores a short window may not settle ("failed to obtain
    stable measurement")."""
    shape_args = [f"--shape={n}:{','.join(map(str, s))}" for n, s in shapes.items()]
    for attempt in range(1, attempts + 1):
        command = [str(binary()), "-m", model, "-x", "1", "-u", url, "-i", "grpc", f"--input-data={inputs}",
                   *shape_args, f"--concurrency-range={concurrency}:{concurrency}:1", "-b", str(batch),
                   "--measurement-mode=count_windows", f"--measurement-request-count={requests * attempt}",
                   "--stability-percentage=100", "--max-trials=5", "-f", str(csv_path), "--percentile=95"]
        done = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=600)
        if done.returncode == 0 and csv_path.is_file():
            break
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        if attempt == attempts:
            raise RuntimeError(f"perf_analyzer {model} c={concurrency} failed: {' | '.join(tail)}")
        print(f"perf_analyzer {model} c={concurrency} failed ({tail[-1] if tail else 'no output'}); again",
              file=sys.stderr, flush=True)
    with open(csv_path) as f:
        row = next(csv.DictReader(f))
    us = {k: float(v) for k, v in row.items() if k and v not in (None, "") and k != "Concurrency"}
    return {"concurrency": concurrency, "batch": batch, "throughput": us["Inferences/Second"],
            "p50_ms": us["p50 latency"] / 1000, "p95_ms": us["p95 latency"] / 1000,
            "p99_ms": us["p99 latency"] / 1000}


def clinical_json(nihss: int, side: str) -> np.ndarray:
    return np.array([json.dumps({"nihss": nihss, "side": side}).encode()], dtype=np.object_)

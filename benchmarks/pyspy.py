"""py-spy on the served Python steps: where a request's time goes inside preprocessing and postprocessing.

The steps run in Triton's Python-backend stub processes, one per model instance; py-spy attaches
to them by pid (non-blocking, so the server is not paused) while the caller runs requests, and
the raw stacks are folded into the functions that held the most samples.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

STEP_MODELS = ("preprocess_perfusion", "preprocess_diffusion", "postprocess_collateral",
               "postprocess_hypoperfusion")


def binary() -> Path | None:
    found = Path(sys.executable).parent / "py-spy"
    return found if found.is_file() else (Path(p) if (p := shutil.which("py-spy")) else None)


def stub_pids(models: tuple[str, ...] = STEP_MODELS) -> dict[str, int]:
    """Model name -> pid of its Python-backend stub (the stub's command line names the model's folder)."""
    table = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    pids = {}
    for line in table.splitlines():
        if "triton_python_backend_stub" not in line:
            continue
        pid, args = line.strip().split(" ", 1)
        for model in models:
            if f"/{model}/" in args:
                pids[model] = int(pid)
    return pids


def top_lines(raw: str, limit: int) -> list[tuple[str, float]]:
    """Folded stacks ("f1;f2;f3 count" per line) -> the lines of our science code that were running (the deepest
    ``collat_ensemble`` frame of each sample outside the Triton adapters, numpy calls under it included), with
    their share of the step's busy samples."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        ours = [f for f in stack.split(";") if "collat_ensemble" in f and "triton_models.py" not in f]
        counts[ours[-1] if ours else "(Triton adapter, tensor copies, imports)"] += int(count)
    return [(frame, n / total) for frame, n in counts.most_common(limit)] if total else []


def profile_steps(run_requests: Callable[[], None], work: Path, limit: int = 6,
                  seconds: int = 600) -> dict[str, list[tuple[str, float]]]:
    """Record every step's stub while ``run_requests`` runs (py-spy writes its report when interrupted);
    -> model -> [(function, share of its samples)]."""
    spy = binary()
    if spy is None:
        return {}
    recorders = {}
    for model, pid in stub_pids().items():
        out = work / f"pyspy_{model}.txt"
        recorders[model] = (out, subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--format", "raw",
             "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # let py-spy attach
    run_requests()
    result = {}
    for model, (out, process) in recorders.items():
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        if out.is_file():
            result[model] = top_lines(out.read_text(), limit)
    return result

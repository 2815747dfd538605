"""The README's first command: a phantom case through the real tritonserver to maps, metrics and a PNG.

Starts tritonserver on free loopback ports, writes a phantom case, runs ``collat-client
infer`` on it exactly as a user would (a subprocess, so the CLI's real exit codes and output
are what the demo shows), and stops the server whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from .launcher import TritonServer


def run_demo(repository: Path, out: Path, *, seed: int = 101, strength: int = 1, side: str = "left",
             echo=print) -> int:
    from collat_ensemble.phantom import generate_case, write_case

    case_dir, result_dir = out / "case", out / "results"
    for folder in (case_dir, result_dir):
        shutil.rmtree(folder, ignore_errors=True)
    echo(f"[demo] phantom case seed {seed} (collateral strength {strength}, {side} stroke) -> {case_dir}")
    case = generate_case(seed, strength=strength, side=side)
    write_case(case, case_dir)
    echo("[demo] starting tritonserver on loopback")
    started = time.perf_counter()
    with TritonServer(repository, log_file=out / "tritonserver.log") as server:
        echo(f"[demo] server ready in {time.perf_counter() - started:.1f} s at http://{server.http_url}")
        command = [str(Path(sys.executable).with_name("collat-client")), "infer", str(case_dir / "perfusion.nii.gz"),
                   "--dwi", str(case_dir / "dwi.nii.gz"), "--adc", str(case_dir / "adc.nii.gz"),
                   "--nihss", str(case.nihss), "--age", str(case.age), "--side", side,
                   "--out", str(result_dir), "--url", server.http_url]
        echo("[demo] " + " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)))
        t0 = time.perf_counter()
        code = subprocess.run(command).returncode
        echo(f"[demo] end-to-end {time.perf_counter() - t0:.1f} s (reading, upload, server, writing)")
    if code == 0:
        echo(f"[demo] truth: core {case.truth['core_ml']} mL, hypoperfusion {case.truth['hypoperfusion_ml']} mL, "
             f"DEFUSE 3 {case.truth['defuse3_target_mismatch']}, collateral grade {case.truth['collateral_grade']}")
        echo(f"[demo] maps, metrics.json and overview.png in {result_dir}")
    return code

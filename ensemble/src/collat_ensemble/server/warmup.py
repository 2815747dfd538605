"""The server proves it can serve before it is announced: one phantom request through every pipeline.

Why: a server can load every model, report ready, and still fail every request (numpy 2 beside the pip
server's stub did exactly that: the stub misread the tensors and every valid scan came back "constant").
A warm-up request with a known-good case, checked for a sensible METRICS document, turns any such
environment fault into a start-up failure with its reason, instead of a wrong reason on every request.

The case is written into the repository when it is built (a small phantom: 64x64x16x30 perfusion and an
MNI-space DWI/ADC, about 3 MB), inside the ``stroke_triage`` folder, where Triton ignores files beside
``config.pbtxt``; a repository without it (the committed config-only layout) is not warmed up.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from collat_contract.names import STROKE_TRIAGE
from collat_contract.tensors import PIPELINES

WARMUP_FILE = "warmup.npz"


class WarmupError(RuntimeError):
    """The warm-up request failed or gave an implausible answer; the message says which pipeline and why."""


def warmup_path(repository: Path) -> Path:
    return Path(repository) / STROKE_TRIAGE / WARMUP_FILE


def write_warmup_case(repository: Path, seed: int = 7) -> Path:
    """A small phantom case, as the pipelines' input tensors, into the repository."""
    from ..phantom import Acquisition, generate_case

    case = generate_case(seed, side="left", acquisition=Acquisition(matrix=64, slices=16, frames=30,
                                                                    frame_seconds=3.2))
    clinical = json.dumps({"nihss": case.nihss, "age": case.age, "side": "left", "dwi_b_value": 1000.0})
    path = warmup_path(repository)
    np.savez_compressed(path, PERFUSION=case.perfusion.astype(np.int16), PERFUSION_AFFINE=case.perfusion_affine,
                        FRAME_SECONDS=np.array([case.frame_seconds], np.float32),
                        DWI=case.dwi.astype(np.float32), ADC=case.adc.astype(np.float32),
                        DWI_AFFINE=case.diffusion_affine, ADC_AFFINE=case.diffusion_affine,
                        CLINICAL=np.frombuffer(clinical.encode(), np.uint8))
    return path


def _tensors(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {
            "PERFUSION": stored["PERFUSION"].astype(np.float32),
            "PERFUSION_AFFINE": stored["PERFUSION_AFFINE"].astype(np.float64),
            "FRAME_SECONDS": stored["FRAME_SECONDS"].astype(np.float32),
            "DWI": stored["DWI"].astype(np.float32), "ADC": stored["ADC"].astype(np.float32),
            "DWI_AFFINE": stored["DWI_AFFINE"].astype(np.float64),
            "ADC_AFFINE": stored["ADC_AFFINE"].astype(np.float64),
            "CLINICAL": np.array([stored["CLINICAL"].tobytes()], dtype=np.object_),
        }


def implausible(metrics: dict[str, Any]) -> str | None:
    """What is wrong with a warm-up answer, or None: each branch present with finite, positive volumes (a withheld
    lesion says why instead of a volume)."""
    collateral, hypoperfusion = metrics.get("collateral"), metrics.get("hypoperfusion")
    if collateral is not None and not collateral.get("brain_volume_ml", 0) > 0:
        return f"collateral brain volume {collateral.get('brain_volume_ml')!r} mL"
    if hypoperfusion is not None:
        withheld = hypoperfusion.get("lesion_withheld") is not None  # a withheld lesion has no volume, by design
        for key in ("core_ml", "brain_volume_ml") if withheld else ("core_ml", "hypoperfusion_ml", "brain_volume_ml"):
            value = hypoperfusion.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"hypoperfusion {key} {value!r}"
        if not hypoperfusion["brain_volume_ml"] > 0:
            return "hypoperfusion brain volume 0 mL"
    return None


def warm_up(http_url: str, repository: Path, timeout: float = 600.0) -> list[str]:
    """One request through each pipeline; a line per pipeline with its time, or :class:`WarmupError`."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    path = warmup_path(repository)
    if not path.is_file():
        return []
    arrays = _tensors(path)
    lines = []
    client = http.InferenceServerClient(http_url, network_timeout=timeout, connection_timeout=timeout)
    try:
        for name, pipeline in PIPELINES.items():
            inputs = []
            for spec in pipeline.inputs:
                item = http.InferInput(spec.name, list(arrays[spec.name].shape), spec.datatype)
                item.set_data_from_numpy(arrays[spec.name], binary_data=True)
                inputs.append(item)
            start = time.perf_counter()
            try:
                result = client.infer(name, inputs, outputs=[http.InferRequestedOutput("METRICS", binary_data=True)])
                metrics = json.loads(result.as_numpy("METRICS").reshape(-1)[0])
            except InferenceServerException as exc:
                raise WarmupError(f"the warm-up request through {name} failed: {exc.message()}") from None
            problem = implausible(metrics)
            if problem:
                raise WarmupError(f"the warm-up request through {name} gave an implausible answer: {problem}")
            lines.append(f"{name} {time.perf_counter() - start:.1f} s")
    finally:
        client.close()
    return lines

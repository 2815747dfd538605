"""Requests to the real server built from the client's contract, as the tests send them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpc
import tritonclient.http as http

from collat_client.sdk.transport.kserve import datatype_of
from collat_contract.tensors import PIPELINES
from collat_ensemble.phantom import PhantomCase
from collat_export.weights import demo_checkpoint


def case_arrays(case: PhantomCase, *, side: str = "left", age: float | None = None) -> dict[str, np.ndarray]:
    clinical = {"nihss": case.nihss, "age": case.age if age is None else age, "side": side}
    return {
        "PERFUSION": case.perfusion.astype(np.float32),
        "PERFUSION_AFFINE": case.perfusion_affine.astype(np.float64),
        "FRAME_SECONDS": np.array([case.frame_seconds], np.float32),
        "DWI": case.dwi.astype(np.float32),
        "ADC": case.adc.astype(np.float32),
        "DWI_AFFINE": case.diffusion_affine.astype(np.float64),
        "ADC_AFFINE": case.diffusion_affine.astype(np.float64),
        "CLINICAL": np.array([json.dumps(clinical).encode()], dtype=np.object_),
    }


def infer(client, pipeline: str, arrays: dict[str, np.ndarray], *, names: list[str] | None = None,
          datatypes: dict[str, str] | None = None) -> dict:
    """Send the pipeline's inputs (or ``names`` of them) and return every output as numpy / parsed METRICS."""
    module = http if isinstance(client, http.InferenceServerClient) else grpc
    spec = PIPELINES[pipeline]
    inputs = []
    for t in spec.inputs:
        if names is not None and t.name not in names:
            continue
        value = arrays[t.name]
        dt = (datatypes or {}).get(t.name, datatype_of(value))
        item = module.InferInput(t.name, list(value.shape), dt)
        if module is http:
            item.set_data_from_numpy(value, binary_data=True)
        else:
            item.set_data_from_numpy(value)
        inputs.append(item)
    outputs = [module.InferRequestedOutput(t.name, binary_data=True) if module is http
               else module.InferRequestedOutput(t.name) for t in spec.outputs]
    kwargs = {} if module is http else {"client_timeout": 600.0}
    result = client.infer(pipeline, inputs, outputs=outputs, **kwargs)
    out = {t.name: result.as_numpy(t.name) for t in spec.outputs}
    out["METRICS"] = json.loads(out["METRICS"].reshape(-1)[0])
    return out


def build_cpu_repository(out: Path, *extra: str, mrod_preset: str | None = None, hypo_card: Path | None = None,
                         ) -> Path:
    """The CPU model repository with the shipped weights (the served 3D-MROD-Net, or ``mrod_preset``'s), or the
    U-Net a network card describes."""
    hypo = ["--hypo-card", str(hypo_card)] if hypo_card else ["--hypo-checkpoint", str(demo_checkpoint("hypo"))]
    subprocess.run([sys.executable, "-m", "collat_export.cli", "repository", "--target", "python-onnx",
                    "--out", str(out), "--mrod-checkpoint", str(demo_checkpoint("mrod", mrod_preset)), *hypo, *extra],
                   check=True, capture_output=True, text=True)
    return out

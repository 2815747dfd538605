"""The Python-backend steps and the three ensembles of the model repository.

Public tensors come from the shared contract (``collat_contract.tensors``); the tensors
between steps are internal and named here. The Python steps are the same on every target
(they run numpy/scipy on the CPU); only the networks change between TensorRT, ONNX
Runtime and the Python-backend ONNX model.

Why an ensemble and not BLS: preprocess_diffusion emits all slabs of one patient as a
``[S, 4, 16, 128, 128]`` tensor; an ensemble step feeding a batching model with it makes S
that request's batch, and hypoperfusion_unet's dynamic batcher merges the slabs of
concurrent patients (verified on tritonserver 2.51 by the integration tests, which read the
model's batch statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collat_contract import names
from collat_contract.tensors import (
    ADC,
    ADC_AFFINE,
    BRAIN_MASK,
    CLINICAL,
    COLLATERAL_MAPS,
    CORE_MASK,
    DWI,
    DWI_AFFINE,
    FRAME_SECONDS,
    HYPOPERFUSION_PROB,
    LESION_MASK,
    METRICS,
    PERFUSION,
    PERFUSION_AFFINE,
    PIPELINES,
    NetworkIO,
    Pipeline,
    TensorSpec,
)

from ..preprocess import SLAB_STRIDE, check_stride
from ..serving.perfusion import NetworkGrid
from ..template import TEMPLATE_FILE, Template, save_template
from .pbtxt import instance_group, parameters_block, tensor_block


@dataclass(frozen=True)
class PythonStep:
    name: str
    adapter: str  # class in collat_ensemble.serving.triton_models
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instances: int = 1


def python_steps(mrod: NetworkIO, unet: NetworkIO) -> tuple[PythonStep, ...]:
    """The five steps, with the networks' tensors shaping what the pre- and post-processing exchange with them.

    The perfusion's preprocessing (about 1 s a patient on 2 cores, the longest step) runs two instances so that
    two patients' series are prepared side by side; the others (0.3 s, 40 ms, 30 ms) one: the perfusion branch
    sets the pace, and a second instance of each only held another 50-70 MB (issue 37's memory account)."""
    slab = unet.inputs[0].dims
    frames = mrod.inputs[0].dims[0]
    mask = TensorSpec("NETWORK_MASK", "UINT8", (-1, -1, -1), "brain mask on the network grid [D, H, W]")
    perf_ctx = TensorSpec("PERFUSION_CONTEXT", "BYTES", (1,), "geometry and timings, JSON")
    diff_ctx = TensorSpec("DIFFUSION_CONTEXT", "BYTES", (1,), "geometry, clinical inputs and timings, JSON")
    core = TensorSpec("CORE_NATIVE", "UINT8", (-1, -1, -1), "ADC core on the scan's grid (RAS order)")
    brain = TensorSpec("BRAIN_NATIVE", "UINT8", (-1, -1, -1), "brain on the scan's grid (RAS order)")
    return (
        PythonStep(names.PREPROCESS_PERFUSION, "PreprocessPerfusion", (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS),
                   (TensorSpec("MROD_INPUT", "FP32", (1, frames, -1, -1, -1), "network input"), mask, perf_ctx),
                   instances=2),
        PythonStep(names.POSTPROCESS_COLLATERAL, "PostprocessCollateral",
                   (TensorSpec("PHASES", "FP32", (1, 5, -1, -1, -1), "network maps"), mask, perf_ctx),
                   (COLLATERAL_MAPS, BRAIN_MASK, METRICS)),
        PythonStep(names.PREPROCESS_DIFFUSION, "PreprocessDiffusion", (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL),
                   (TensorSpec("SLABS", "FP32", (-1, *slab), "16-slice slabs"),
                    TensorSpec("SLAB_NIHSS", "FP32", (-1, 1), "NIHSS / 21 per slab"), core, brain, diff_ctx)),
        PythonStep(names.POSTPROCESS_HYPOPERFUSION, "PostprocessHypoperfusion",
                   (TensorSpec("LESION_PROB", "FP32", (-1, *unet.outputs[0].dims), "slab probabilities"),
                    core, brain, diff_ctx),
                   (HYPOPERFUSION_PROB, LESION_MASK, CORE_MASK, METRICS)),
        PythonStep(names.MERGE_METRICS, "MergeMetrics",
                   (TensorSpec("COLLATERAL_METRICS", "BYTES", (1,), "collateral METRICS"),
                    TensorSpec("HYPOPERFUSION_METRICS", "BYTES", (1,), "hypoperfusion METRICS")),
                   (METRICS,)),
    )


def render_python_step(step: PythonStep, parameters: dict[str, str]) -> str:
    lines = [f'name: "{step.name}"', 'backend: "python"', "max_batch_size: 0",
             f"input [\n{tensor_block(step.inputs)}\n]", f"output [\n{tensor_block(step.outputs)}\n]",
             instance_group(step.instances, "KIND_CPU")]
    if parameters:
        lines.append(parameters_block(parameters))
    return "\n".join(lines) + "\n"


def model_py(step: PythonStep) -> str:
    """The one-line ``model.py``: the adapter lives in the installed collat-ensemble package."""
    return (f'"""Triton Python-backend entry point of {step.name} (code: collat_ensemble.serving)."""\n\n'
            f"from collat_ensemble.serving.triton_models import {step.adapter} as TritonPythonModel  # noqa: F401\n")


@dataclass(frozen=True)
class Route:
    """One ensemble step: model, its input name -> ensemble tensor, its output name -> ensemble tensor."""

    model: str
    inputs: dict[str, str]
    outputs: dict[str, str]


def _routes(pipeline: str, mrod: NetworkIO, unet: NetworkIO) -> list[Route]:
    merged = pipeline == names.STROKE_TRIAGE
    collateral = [
        Route(names.PREPROCESS_PERFUSION, {t.name: t.name for t in (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS)},
              {"MROD_INPUT": "mrod_input", "NETWORK_MASK": "network_mask", "PERFUSION_CONTEXT": "perfusion_context"}),
        Route(mrod.triton_name, {mrod.inputs[0].name: "mrod_input"}, {mrod.outputs[0].name: "phases"}),
        Route(names.POSTPROCESS_COLLATERAL,
              {"PHASES": "phases", "NETWORK_MASK": "network_mask", "PERFUSION_CONTEXT": "perfusion_context"},
              {COLLATERAL_MAPS.name: COLLATERAL_MAPS.name, BRAIN_MASK.name: BRAIN_MASK.name,
               METRICS.name: "collateral_metrics" if merged else METRICS.name}),
    ]
    diffusion = [
        Route(names.PREPROCESS_DIFFUSION, {t.name: t.name for t in (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL)},
              {"SLABS": "slabs", "SLAB_NIHSS": "slab_nihss", "CORE_NATIVE": "core_native",
               "BRAIN_NATIVE": "brain_native", "DIFFUSION_CONTEXT": "diffusion_context"}),
        Route(unet.triton_name, {unet.inputs[0].name: "slabs", unet.inputs[1].name: "slab_nihss"},
              {unet.outputs[0].name: "lesion_prob"}),
        Route(names.POSTPROCESS_HYPOPERFUSION,
              {"LESION_PROB": "lesion_prob", "CORE_NATIVE": "core_native", "BRAIN_NATIVE": "brain_native",
               "DIFFUSION_CONTEXT": "diffusion_context"},
              {HYPOPERFUSION_PROB.name: HYPOPERFUSION_PROB.name, LESION_MASK.name: LESION_MASK.name,
               CORE_MASK.name: CORE_MASK.name, METRICS.name: "hypoperfusion_metrics" if merged else METRICS.name}),
    ]
    if pipeline == names.COLLATERAL_PIPELINE:
        return collateral
    if pipeline == names.HYPOPERFUSION_PIPELINE:
        return diffusion
    merge = Route(names.MERGE_METRICS, {"COLLATERAL_METRICS": "collateral_metrics",
                                        "HYPOPERFUSION_METRICS": "hypoperfusion_metrics"}, {METRICS.name: METRICS.name})
    return collateral + diffusion + [merge]


def render_ensemble(pipeline: Pipeline, mrod: NetworkIO, unet: NetworkIO) -> str:
    steps = []
    for route in _routes(pipeline.name, mrod, unet):
        maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in route.inputs.items()]
        maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in route.outputs.items()]
        steps.append(f'    {{\n      model_name: "{route.model}"\n      model_version: -1\n' + "\n".join(maps)
                     + "\n    }")
    return "\n".join([
        f'name: "{pipeline.name}"', 'platform: "ensemble"', "max_batch_size: 0",
        f"input [\n{tensor_block(pipeline.inputs)}\n]", f"output [\n{tensor_block(pipeline.outputs)}\n]",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}",
    ]) + "\n"


def ensembles() -> tuple[Pipeline, ...]:
    return tuple(PIPELINES.values())


def write_pipeline_models(root: Path, mrod: NetworkIO, unet: NetworkIO, grid: NetworkGrid,
                          template: Template | None = None, unet_stride: int = SLAB_STRIDE) -> list[Path]:
    """The Python-backend steps and the three ensembles around the two networks (same on every target).

    ``grid`` is what preprocess_perfusion produces for 3D-MROD-Net, so the repository must be
    written for the preset of the network files it serves. ``template`` (the MNI registration
    target, built from the nilearn wheel) goes into both preprocessing steps' folders (the DWI and the
    perfusion baseline are registered to it); without it only the configuration is written (the
    committed layout), and those steps will not load until it is.
    """
    parameters = {
        names.PREPROCESS_PERFUSION: {"network_grid": str(grid), "template": TEMPLATE_FILE,
                                     "network_model": mrod.triton_name},
        names.PREPROCESS_DIFFUSION: {"template": TEMPLATE_FILE, "unet_stride": str(check_stride(unet_stride))},
        names.POSTPROCESS_COLLATERAL: {"network_model": mrod.triton_name},
        names.POSTPROCESS_HYPOPERFUSION: {"network_model": unet.triton_name},
    }
    written = []
    for step in python_steps(mrod, unet):
        folder = root / step.name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(render_python_step(step, parameters.get(step.name, {})))
        (folder / "1" / "model.py").write_text(model_py(step))
        if step.name in (names.PREPROCESS_DIFFUSION, names.PREPROCESS_PERFUSION) and template is not None:
            save_template(template, folder / "1" / TEMPLATE_FILE)
        written.append(folder)
    for pipeline in ensembles():
        folder = root / pipeline.name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(render_ensemble(pipeline, mrod, unet))
        written.append(folder)
    return written

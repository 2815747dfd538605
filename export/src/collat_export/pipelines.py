"""The Python-backend steps and the three ensembles of the model repository.

Public tensors come from the client's contract (``collat_client.contract``); the tensors
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

from collat_client.contract import (
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
    METRICS,
    PERFUSION,
    PERFUSION_AFFINE,
    PIPELINES,
    Pipeline,
    TensorSpec,
)

from .io_spec import NetworkIO
from .presets import Preset
from .repository import parameters_block, tensor_block


def _internal(name: str, datatype: str, dims: tuple[int, ...], description: str) -> TensorSpec:
    return TensorSpec(name, datatype, dims, description)


@dataclass(frozen=True)
class PythonStep:
    name: str
    adapter: str  # class in collat_ensemble.serving.triton_models
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instances: int = 1


def python_steps(mrod: Preset, hypo: Preset) -> tuple[PythonStep, ...]:
    g = hypo.geometry
    slab = (g.channels, g.slices, g.height, g.width)
    mni = (91, 109, 60)
    mask = _internal("NETWORK_MASK", "UINT8", (-1, -1, -1), "brain mask on the network grid [D, H, W]")
    perf_ctx = _internal("PERFUSION_CONTEXT", "BYTES", (1,), "geometry and timings, JSON")
    diff_ctx = _internal("DIFFUSION_CONTEXT", "BYTES", (1,), "geometry, clinical inputs and timings, JSON")
    core = _internal("CORE_MNI", "UINT8", mni, "ADC core on the MNI 2 mm grid")
    brain = _internal("BRAIN_MNI", "UINT8", mni, "brain on the MNI 2 mm grid")
    return (
        PythonStep("preprocess_perfusion", "PreprocessPerfusion", (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS),
                   (_internal("MROD_INPUT", "FP32", (1, mrod.geometry.channels, -1, -1, -1), "network input"),
                    mask, perf_ctx), instances=2),
        PythonStep("postprocess_collateral", "PostprocessCollateral",
                   (_internal("PHASES", "FP32", (1, 5, -1, -1, -1), "network maps"), mask, perf_ctx),
                   (COLLATERAL_MAPS, BRAIN_MASK, METRICS), instances=2),
        PythonStep("preprocess_diffusion", "PreprocessDiffusion", (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL),
                   (_internal("SLABS", "FP32", (-1, *slab), "16-slice slabs"),
                    _internal("SLAB_NIHSS", "FP32", (-1, 1), "NIHSS / 21 per slab"), core, brain, diff_ctx),
                   instances=2),
        PythonStep("postprocess_hypoperfusion", "PostprocessHypoperfusion",
                   (_internal("LESION_PROB", "FP32", (-1, 1, g.slices, g.height, g.width), "slab probabilities"),
                    core, brain, diff_ctx),
                   (HYPOPERFUSION_PROB, CORE_MASK, METRICS), instances=2),
        PythonStep("merge_metrics", "MergeMetrics",
                   (_internal("COLLATERAL_METRICS", "BYTES", (1,), "collateral METRICS"),
                    _internal("HYPOPERFUSION_METRICS", "BYTES", (1,), "hypoperfusion METRICS")),
                   (METRICS,)),
    )


def _tensors(specs: tuple[TensorSpec, ...]) -> str:
    return tensor_block([(t.name, t.config_type, t.dims) for t in specs])


def render_python_step(step: PythonStep, parameters: dict[str, str]) -> str:
    lines = [f'name: "{step.name}"', 'backend: "python"', "max_batch_size: 0",
             f"input [\n{_tensors(step.inputs)}\n]", f"output [\n{_tensors(step.outputs)}\n]",
             f"instance_group [\n  {{\n    count: {step.instances}\n    kind: KIND_CPU\n  }}\n]"]
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


def _routes(pipeline: str, mrod: NetworkIO, hypo: NetworkIO) -> list[Route]:
    collateral = [
        Route("preprocess_perfusion", {t.name: t.name for t in (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS)},
              {"MROD_INPUT": "mrod_input", "NETWORK_MASK": "network_mask", "PERFUSION_CONTEXT": "perfusion_context"}),
        Route(mrod.triton_name, {mrod.inputs[0].name: "mrod_input"}, {mrod.outputs[0].name: "phases"}),
        Route("postprocess_collateral",
              {"PHASES": "phases", "NETWORK_MASK": "network_mask", "PERFUSION_CONTEXT": "perfusion_context"},
              {COLLATERAL_MAPS.name: COLLATERAL_MAPS.name, BRAIN_MASK.name: BRAIN_MASK.name,
               METRICS.name: "collateral_metrics" if pipeline == "stroke_triage" else METRICS.name}),
    ]
    diffusion = [
        Route("preprocess_diffusion", {t.name: t.name for t in (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL)},
              {"SLABS": "slabs", "SLAB_NIHSS": "slab_nihss", "CORE_MNI": "core_mni", "BRAIN_MNI": "brain_mni",
               "DIFFUSION_CONTEXT": "diffusion_context"}),
        Route(hypo.triton_name, {hypo.inputs[0].name: "slabs", hypo.inputs[1].name: "slab_nihss"},
              {hypo.outputs[0].name: "lesion_prob"}),
        Route("postprocess_hypoperfusion",
              {"LESION_PROB": "lesion_prob", "CORE_MNI": "core_mni", "BRAIN_MNI": "brain_mni",
               "DIFFUSION_CONTEXT": "diffusion_context"},
              {HYPOPERFUSION_PROB.name: HYPOPERFUSION_PROB.name, CORE_MASK.name: CORE_MASK.name,
               METRICS.name: "hypoperfusion_metrics" if pipeline == "stroke_triage" else METRICS.name}),
    ]
    if pipeline == "collateral_pipeline":
        return collateral
    if pipeline == "hypoperfusion_pipeline":
        return diffusion
    merge = Route("merge_metrics", {"COLLATERAL_METRICS": "collateral_metrics",
                                    "HYPOPERFUSION_METRICS": "hypoperfusion_metrics"}, {METRICS.name: METRICS.name})
    return collateral + diffusion + [merge]


def render_ensemble(pipeline: Pipeline, mrod: NetworkIO, hypo: NetworkIO) -> str:
    steps = []
    for route in _routes(pipeline.name, mrod, hypo):
        maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in route.inputs.items()]
        maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in route.outputs.items()]
        steps.append(f'    {{\n      model_name: "{route.model}"\n      model_version: -1\n' + "\n".join(maps)
                     + "\n    }")
    return "\n".join([
        f'name: "{pipeline.name}"', 'platform: "ensemble"', "max_batch_size: 0",
        f"input [\n{_tensors(pipeline.inputs)}\n]", f"output [\n{_tensors(pipeline.outputs)}\n]",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}",
    ]) + "\n"


def ensembles() -> tuple[Pipeline, ...]:
    return tuple(PIPELINES.values())

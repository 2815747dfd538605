"""Triton model directories for the two networks, for each deployment target.

Targets:

* ``tensorrt``: ``platform: "tensorrt_plan"`` on ``KIND_GPU``. The version folder holds
  ``model.onnx`` as the engine source; ``model.plan`` is built on the GPU that serves it
  (engines are GPU- and TensorRT-version-specific).
* ``onnxruntime``: Triton's onnxruntime backend on ``KIND_CPU`` (NGC images without a GPU).
* ``python-onnx``: a Python-backend model running the ONNX file in ONNX Runtime; what the
  pip-installed tritonserver (no onnxruntime backend) serves on CPU machines.

The text is written by hand rather than through protobuf so that this package does not
depend on tritonclient; the tests parse every generated file with Triton's own schema.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from .io_spec import NetworkIO, TensorSpec
from .presets import Preset

TARGETS = ("tensorrt", "onnxruntime", "python-onnx")


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic-batching settings of one network.

    The U-Net sees 12 slabs per patient (60 slices, 16-slice window, stride 4), so its
    preferred sizes are one and two patients; MROD volumes are large and batch by two.
    """

    max_batch_size: int
    preferred: tuple[int, ...]
    max_queue_delay_us: int
    # Overload protection: beyond this many queued requests, or this long in the queue, a request is refused
    # at once with a clear error instead of waiting without bound.
    max_queue_size: int = 16
    queue_timeout_us: int = 120_000_000


BATCHING = {
    "mrod_net": BatchingPolicy(max_batch_size=4, preferred=(2, 4), max_queue_delay_us=5000),
    "hypoperfusion_unet": BatchingPolicy(max_batch_size=32, preferred=(12, 24), max_queue_delay_us=2000),
}


def tensor_block(rows: list[tuple[str, str, tuple[int, ...]]]) -> str:
    """``input``/``output`` entries of a config.pbtxt from (name, TYPE_..., dims) rows."""
    out = []
    for name, config_type, dims in rows:
        shown = ", ".join(str(d) for d in dims)
        out.append(f'  {{\n    name: "{name}"\n    data_type: {config_type}\n    dims: [ {shown} ]\n  }}')
    return ",\n".join(out)


def _tensor_block(specs: tuple[TensorSpec, ...]) -> str:
    return tensor_block([(t.name, f"TYPE_{t.dtype}", t.dims) for t in specs])


def render_config(io: NetworkIO, target: str, *, dynamic_batching: bool = True, cpu_threads: int = 2,
                  instances: int = 1, max_queue_size: int | None = None) -> str:
    """The ``config.pbtxt`` of one network for one target (``max_queue_size`` overrides the policy's)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    policy = BATCHING[io.triton_name]
    if max_queue_size is not None:
        if max_queue_size < 1:
            raise ValueError(f"max queue size must be at least 1, got {max_queue_size}")
        policy = replace(policy, max_queue_size=max_queue_size)
    lines = [f'name: "{io.triton_name}"']
    if target == "tensorrt":
        lines += ['platform: "tensorrt_plan"', 'default_model_filename: "model.plan"']
    elif target == "onnxruntime":
        lines += ['backend: "onnxruntime"', 'default_model_filename: "model.onnx"']
    else:
        lines += ['backend: "python"']
    lines.append(f"max_batch_size: {policy.max_batch_size}")
    lines.append(f"input [\n{_tensor_block(io.inputs)}\n]")
    lines.append(f"output [\n{_tensor_block(io.outputs)}\n]")
    if dynamic_batching:
        preferred = ", ".join(str(p) for p in policy.preferred)
        lines.append(
            "dynamic_batching {\n"
            f"  preferred_batch_size: [ {preferred} ]\n"
            f"  max_queue_delay_microseconds: {policy.max_queue_delay_us}\n"
            "  default_queue_policy {\n"
            "    timeout_action: REJECT\n"
            f"    default_timeout_microseconds: {policy.queue_timeout_us}\n"
            "    allow_timeout_override: true\n"
            f"    max_queue_size: {policy.max_queue_size}\n"
            "  }\n"
            "}"
        )
    kind = "KIND_GPU" if target == "tensorrt" else "KIND_CPU"
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    if target == "onnxruntime":
        lines.append(parameters_block({"intra_op_thread_count": str(cpu_threads), "inter_op_thread_count": "1"}))
    elif target == "python-onnx":
        lines.append(parameters_block({"intra_op_threads": str(cpu_threads), "onnx_file": "model.onnx"}))
    return "\n".join(lines) + "\n"


def parameters_block(values: dict[str, str]) -> str:
    rows = [f'  {{\n    key: "{k}"\n    value: {{ string_value: "{v}" }}\n  }}' for k, v in values.items()]
    return "parameters [\n" + ",\n".join(rows) + "\n]"


def write_model_dir(root: Path, io: NetworkIO, target: str, *, onnx_dir: Path | None = None,
                    dynamic_batching: bool = True, cpu_threads: int = 2, max_queue_size: int | None = None) -> Path:
    """Write ``root/<name>/config.pbtxt`` and its version folder ``1/``.

    ``onnx_dir`` is a folder written by :func:`collat_export.onnx_export.export_onnx`;
    without it only the configuration is written (the committed production layout).
    """
    model_dir = root / io.triton_name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(
        render_config(io, target, dynamic_batching=dynamic_batching, cpu_threads=cpu_threads,
                      max_queue_size=max_queue_size))
    if onnx_dir is not None:
        for name in ("model.onnx", "model.json"):
            shutil.copyfile(onnx_dir / name, version / name)
    if target == "python-onnx":
        source = resources.files("collat_export.triton").joinpath("python_onnx_model.py")
        (version / "model.py").write_text(source.read_text())
    return model_dir


def write_pipeline_models(root: Path, mrod: Preset, hypo: Preset) -> list[Path]:
    """The Python-backend steps and the three ensembles around the two networks (same on every target).

    ``mrod``'s geometry is the grid preprocess_perfusion produces, so the repository must be
    written for the presets of the network files it serves.
    """
    from .io_spec import network_io
    from .pipelines import ensembles, model_py, python_steps, render_ensemble, render_python_step

    g = mrod.geometry
    parameters = {
        "preprocess_perfusion": {"network_grid": f"{g.channels}x{g.slices}x{g.height}x{g.width}@{g.frame_seconds:g}"},
        "postprocess_collateral": {"network_model": network_io(mrod).triton_name},
        "postprocess_hypoperfusion": {"network_model": network_io(hypo).triton_name},
    }
    written = []
    for step in python_steps(mrod, hypo):
        folder = root / step.name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(render_python_step(step, parameters.get(step.name, {})))
        (folder / "1" / "model.py").write_text(model_py(step))
        written.append(folder)
    for pipeline in ensembles():
        folder = root / pipeline.name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(render_ensemble(pipeline, network_io(mrod), network_io(hypo)))
        written.append(folder)
    return written

"""Triton model directories for the two networks, for each deployment target.

Targets:

* ``tensorrt``: ``platform: "tensorrt_plan"`` on ``KIND_GPU``. The version folder holds
  ``model.onnx`` as the engine source; ``model.plan`` is built on the GPU that serves it
  (engines are GPU- and TensorRT-version-specific).
* ``openvino``: Triton's openvino backend on ``KIND_CPU`` reading the ONNX file (the NGC image's
  CPU profile; OpenVINO runs these networks about twice as fast as ONNX Runtime on a CPU).
* ``onnxruntime``: Triton's onnxruntime backend on ``KIND_CPU`` (NGC images without a GPU).
* ``python-onnx``: a Python-backend model running the ONNX file in OpenVINO when it is installed,
  else ONNX Runtime; what the pip-installed tritonserver (neither backend) serves on CPU machines.

A network is described by its :class:`collat_contract.tensors.NetworkIO` (names and dims);
the ONNX files come from ``collat-export``, which builds that description from a preset.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from collat_contract.names import HYPOPERFUSION_UNET, MROD_NET
from collat_contract.tensors import NetworkIO

from .pbtxt import instance_group, parameters_block, tensor_block

TARGETS = ("tensorrt", "openvino", "onnxruntime", "python-onnx")


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic-batching settings of one network.

    A patient reaches the U-Net as one request of all its 16-slice slabs, as many as the
    deployment's window stride gives (``preprocess.slab_starts``; 12 at stride 4); the preferred
    sizes are one and two patients at stride 4. MROD volumes are large and batch by two.
    """

    max_batch_size: int
    preferred: tuple[int, ...]
    max_queue_delay_us: int
    # Overload protection: beyond this many queued requests, or this long in the queue, a request is refused
    # at once with a clear error instead of waiting without bound.
    max_queue_size: int = 16
    queue_timeout_us: int = 120_000_000


BATCHING = {
    MROD_NET: BatchingPolicy(max_batch_size=4, preferred=(2, 4), max_queue_delay_us=5000),
    HYPOPERFUSION_UNET: BatchingPolicy(max_batch_size=32, preferred=(12, 24), max_queue_delay_us=2000),
}
# CPU networks (python-onnx) run a batch this many samples at a time (0: whole), to bound the runtime's
# intermediate tensors: a patient's 12 U-Net slabs at once took 0.88 GB in OpenVINO, four at a time 0.44 GB, two
# at a time (BF16) 80 MB less than four, none of them slower; 3D-MROD-Net series are one sample each, and two
# patients' series are run one after the other.
RUN_CHUNK = {MROD_NET: 1, HYPOPERFUSION_UNET: 2}
# CPU networks (python-onnx) batch at most this many requests: a batch of 3D-MROD-Net series runs one series at a
# time on a CPU (RUN_CHUNK), so a larger batch buys nothing and holds every series of it in the Python backend's
# shared memory at once (78 MB each; four took the warm server 0.2 GB up under load).
CPU_MAX_BATCH = {MROD_NET: 2}
# CPU networks compiled for the input shape they meet (the last one kept) rather than for any shape: 3D-MROD-Net ran
# 1.5x faster and held 0.2 GB less so; the U-Net's slabs gained nothing (its shapes are fixed but for the batch).
STATIC_SHAPES = {MROD_NET: True}


def batching_policy(name: str, target: str) -> BatchingPolicy:
    """A network's batching on one target: its policy, capped on the CPU (``CPU_MAX_BATCH``)."""
    policy = BATCHING[name]
    if target == "python-onnx" and name in CPU_MAX_BATCH:
        cap = CPU_MAX_BATCH[name]
        policy = replace(policy, max_batch_size=cap, preferred=tuple(p for p in policy.preferred if p <= cap))
    return policy


def render_config(io: NetworkIO, target: str, *, dynamic_batching: bool = True, cpu_threads: int = 2,
                  instances: int = 1, max_queue_size: int | None = None) -> str:
    """The ``config.pbtxt`` of one network for one target (``max_queue_size`` overrides the policy's)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    policy = batching_policy(io.triton_name, target)
    if max_queue_size is not None:
        if max_queue_size < 1:
            raise ValueError(f"max queue size must be at least 1, got {max_queue_size}")
        policy = replace(policy, max_queue_size=max_queue_size)
    lines = [f'name: "{io.triton_name}"']
    if target == "tensorrt":
        lines += ['platform: "tensorrt_plan"', 'default_model_filename: "model.plan"']
    elif target == "onnxruntime":
        lines += ['backend: "onnxruntime"', 'default_model_filename: "model.onnx"']
    elif target == "openvino":
        lines += ['backend: "openvino"', 'default_model_filename: "model.onnx"']
    else:
        lines += ['backend: "python"']
    lines.append(f"max_batch_size: {policy.max_batch_size}")
    lines.append(f"input [\n{tensor_block(io.inputs)}\n]")
    lines.append(f"output [\n{tensor_block(io.outputs)}\n]")
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
    lines.append(instance_group(instances, "KIND_GPU" if target == "tensorrt" else "KIND_CPU"))
    if target == "onnxruntime":
        lines.append(parameters_block({"intra_op_thread_count": str(cpu_threads), "inter_op_thread_count": "1"}))
    elif target == "openvino":  # one stream, latency first: a patient's request is one large batch
        lines.append(parameters_block({"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                       "INFERENCE_NUM_THREADS": str(cpu_threads)}))
    elif target == "python-onnx":
        lines.append(parameters_block({"intra_op_threads": str(cpu_threads), "onnx_file": "model.onnx",
                                       "runtime": "auto", "run_chunk": str(RUN_CHUNK.get(io.triton_name, 0)),
                                       "static_shapes": "1" if STATIC_SHAPES.get(io.triton_name) else "0"}))
    return "\n".join(lines) + "\n"


def write_model_dir(root: Path, io: NetworkIO, target: str, *, onnx_dir: Path | None = None,
                    dynamic_batching: bool = True, cpu_threads: int = 2, max_queue_size: int | None = None) -> Path:
    """Write ``root/<name>/config.pbtxt`` and its version folder ``1/``.

    ``onnx_dir`` is a folder written by ``collat_export.onnx_export.export_onnx``;
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
        for name in ("model_int8.xml", "model_int8.bin"):  # an INT8 IR the weights' card names, where shipped
            if (onnx_dir / name).is_file():
                shutil.copyfile(onnx_dir / name, version / name)
            else:
                (version / name).unlink(missing_ok=True)  # never one left from the weights before
    if target == "python-onnx":
        (version / "model.py").write_text(network_model_source())
    return model_dir


def network_model_source() -> str:
    """The Python-backend ``model.py`` of a ``python-onnx`` network: this package's ``network_model`` module,
    copied as a file because it must run in tritonserver's stub without the project installed."""
    return resources.files("collat_ensemble.server").joinpath("network_model.py").read_text()

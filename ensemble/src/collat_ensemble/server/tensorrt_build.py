"""ONNX -> TensorRT engine, with optimization profiles, FP16, a timing cache and a parity check.

Engines are specific to the GPU model and the TensorRT version that built them, so they
are built where they run (the Docker entrypoint does it at start-up) and the sidecar
JSON records GPU name, compute capability and TensorRT version; a loader compares them.

Precision: TensorRT 10 takes FP16 as a builder flag over an FP32 network. TensorRT 11
removed weak typing, so there the network is built strongly typed from an FP16 ONNX
(:func:`.fp16.convert_to_fp16`, normalization kept in FP32).

Everything that talks to TensorRT or CUDA imports them lazily: without a GPU this module
still imports, and :func:`unavailable_reason` says in one line why no engine can be built.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collat_contract.tensors import TensorSpec

FP32_ENGINE_TOLERANCE = 1e-3
FP16_ENGINE_TOLERANCE = 2e-2


class TensorRTUnavailable(RuntimeError):
    """No GPU or no TensorRT on this machine."""


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max shapes (batch axis included) for every input of one optimization profile."""

    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]

    def validate(self, inputs: tuple[TensorSpec, ...]) -> None:
        for spec in inputs:
            for label, table in (("min", self.min), ("opt", self.opt), ("max", self.max)):
                if spec.name not in table:
                    raise ValueError(f"profile has no {label} shape for input {spec.name}")
                shape = table[spec.name]
                if len(shape) != len(spec.dims) + 1:
                    raise ValueError(f"{label} shape of {spec.name} has {len(shape)} axes, expected "
                                     f"{len(spec.dims) + 1} (batch + {list(spec.dims)})")
                for axis, (fixed, got) in enumerate(zip(spec.dims, shape[1:], strict=True), start=1):
                    if fixed != -1 and fixed != got:
                        raise ValueError(f"{label} shape of {spec.name} axis {axis} is {got}, "
                                         f"but the network fixes it at {fixed}")
            lo, mid, hi = self.min[spec.name], self.opt[spec.name], self.max[spec.name]
            if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
                raise ValueError(f"{spec.name}: need min <= opt <= max on every axis, got {lo} {mid} {hi}")


_SHAPE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(\d+(?:x\d+)*)$")


def parse_shapes(items: tuple[str, ...] | list[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:1x60x20x128x128`` items (trtexec's notation) into a table."""
    table: dict[str, tuple[int, ...]] = {}
    for item in items:
        for part in item.split(","):
            m = _SHAPE_RE.match(part.strip())
            if not m:
                raise ValueError(f"shape {part!r} is not NAME:AxBxC")
            table[m.group(1)] = tuple(int(x) for x in m.group(2).split("x"))
    return table


def default_profile(inputs: tuple[TensorSpec, ...], geometry: dict[str, Any], max_batch: int,
                    spatial_multiple: int | None = None) -> ShapeProfile:
    """Batch 1..max_batch; MROD's dynamic slices from 1 and in-plane from its spatial multiple (32, or 64 for
    a fine preset, whose coarse path halves the grid first), up to twice the preset grid."""
    lo: dict[str, tuple[int, ...]] = {}
    opt: dict[str, tuple[int, ...]] = {}
    hi: dict[str, tuple[int, ...]] = {}
    preset_dims = (geometry.get("slices"), geometry.get("height"), geometry.get("width"))
    for spec in inputs:
        mins, opts, maxs = [1], [max(1, max_batch // 2)], [max_batch]
        dynamic_seen = 0
        for d in spec.dims:
            if d != -1:
                mins.append(d), opts.append(d), maxs.append(d)
                continue
            nominal = int(preset_dims[dynamic_seen] or 32)
            floor = 1 if dynamic_seen == 0 else int(spatial_multiple or 32)
            mins.append(floor), opts.append(nominal), maxs.append(max(nominal * 2, floor))
            dynamic_seen += 1
        lo[spec.name], opt[spec.name], hi[spec.name] = tuple(mins), tuple(opts), tuple(maxs)
    return ShapeProfile(lo, opt, hi)


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def uses_strong_typing(version: str) -> bool:
    """TensorRT 11 and later build only strongly typed networks."""
    return tensorrt_major(version) >= 11


@dataclass
class EngineReport:
    engine: str
    onnx: str
    precision: str
    strongly_typed: bool
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, Any]
    build_seconds: float
    parity: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
    return cudart


def unavailable_reason() -> str | None:
    """None when engines can be built here, else one line saying what is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'collat-ensemble[tensorrt]' on a GPU machine)"
    try:
        cudart = _cudart()
    except ImportError:
        return "cuda-python is not installed (it comes with the 'tensorrt' extra)"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return f"no NVIDIA GPU is visible to CUDA ({err})"
    return None


def gpu_descriptor(device: int = 0) -> tuple[str, str]:
    """(name, compute capability) of the GPU engines are built for."""
    cudart = _cudart()
    err, prop = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise TensorRTUnavailable(f"cannot query GPU {device}: {err}")
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip("\x00 "), f"{prop.major}.{prop.minor}"


def build_engine(onnx_path: Path, engine_path: Path, profile: ShapeProfile, *, fp16: bool,
                 workspace_gb: float = 4.0, timing_cache: Path | None = None) -> EngineReport:
    """Build and serialize an engine. Needs a GPU; raises :class:`TensorRTUnavailable` otherwise."""
    import time

    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    import onnx
    import tensorrt as trt

    from .fp16 import convert_to_fp16

    strongly = uses_strong_typing(trt.__version__)
    source = onnx_path
    if fp16 and strongly:
        source = engine_path.with_suffix(".fp16.onnx")
        onnx.save(convert_to_fp16(onnx.load(str(onnx_path))), str(source))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{source}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16 and not strongly:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    trt_profile = builder.create_optimization_profile()
    for name in profile.min:
        trt_profile.set_shape(name, profile.min[name], profile.opt[name], profile.max[name])
    config.add_optimization_profile(trt_profile)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    seconds = time.perf_counter() - start
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    if timing_cache:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    gpu, cc = gpu_descriptor()
    return EngineReport(str(engine_path), str(onnx_path), "fp16" if fp16 else "fp32", strongly, trt.__version__,
                        gpu, cc, {k: {"min": profile.min[k], "opt": profile.opt[k], "max": profile.max[k]}
                                  for k in profile.min}, round(seconds, 2))


def run_engine(engine_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute an engine once on host arrays (used by the parity check and the GPU benchmarks)."""
    import tensorrt as trt

    cudart = _cudart()

    def check(result):
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return result[1] if isinstance(result, tuple) and len(result) > 1 else None

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    stream = check(cudart.cudaStreamCreate())
    buffers: list[int] = []
    outputs: dict[str, np.ndarray] = {}
    try:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                arr = np.ascontiguousarray(inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
                context.set_input_shape(name, arr.shape)
                ptr = check(cudart.cudaMalloc(arr.nbytes))
                buffers.append(ptr)
                check(cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes,
                                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
                context.set_tensor_address(name, ptr)
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(context.get_tensor_shape(name))
                outputs[name] = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                ptr = check(cudart.cudaMalloc(outputs[name].nbytes))
                buffers.append(ptr)
                context.set_tensor_address(name, ptr)
        if not context.execute_async_v3(stream):
            raise RuntimeError(f"{engine_path}: execution failed")
        check(cudart.cudaStreamSynchronize(stream))
        for name, arr in outputs.items():
            check(cudart.cudaMemcpy(arr.ctypes.data, context.get_tensor_address(name), arr.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    finally:
        for ptr in buffers:
            cudart.cudaFree(ptr)
        cudart.cudaStreamDestroy(stream)
    return outputs

"""Triton Python-backend model that runs ``model.onnx`` on the CPU, in OpenVINO or ONNX Runtime.

The pip-installed tritonserver (nvidia-pytriton) ships without the onnxruntime and openvino
backends, so on machines without a GPU each network is served by this file. OpenVINO runs
these 3D networks about twice as fast as ONNX Runtime on the same cores with the same values
(benchmarks/RESULTS.md), so it is chosen when it is installed; ONNX Runtime is the fallback,
and ``COLLAT_CPU_RUNTIME`` (or the model's ``runtime`` parameter) forces either. The arithmetic
precision is chosen by evidence (:func:`choose_precision`): INT8 (the quantized IR shipped beside
the ONNX, ``model_int8.xml``) where the CPU has INT8 dot-product units (VNNI), else BF16 where it
has BF16 units, each only when the network's model card accepts it, by a measurement on held-out
phantoms recorded there (``model.json`` ``accepted_precisions``); FP32 otherwise;
``COLLAT_CPU_PRECISION`` overrides, and the choice and its reason are logged. It keeps Triton's
dynamic batching meaningful: the requests Triton hands over in one ``execute`` call are stacked along the batch
axis (grouped by shape, since 3D-MROD-Net's grid is dynamic) and run as one call. It imports
only numpy and the runtime, never the project's packages, so it runs in any Python that
tritonserver's stub uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

try:  # available only inside tritonserver
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - imported by unit tests outside Triton
    pb_utils = None


def group_by_shape(shapes: Sequence[tuple[tuple[int, ...], ...]]) -> list[list[int]]:
    """Indices of requests whose inputs agree on every axis but the batch axis, in arrival order."""
    groups: dict[tuple, list[int]] = {}
    for index, per_input in enumerate(shapes):
        key = tuple(s[1:] for s in per_input)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


RUNTIME_VARIABLE = "COLLAT_CPU_RUNTIME"
RUNTIMES = ("openvino", "onnxruntime")


def choose_runtime(requested: str | None) -> str:
    """``auto`` (or nothing): OpenVINO when it can be imported, else ONNX Runtime. The environment variable
    wins over the model's parameter, so an operator can switch runtimes without rebuilding the repository."""
    choice = (os.environ.get(RUNTIME_VARIABLE) or requested or "auto").strip().lower()
    if choice == "auto":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "onnxruntime"
        return "openvino"
    if choice not in RUNTIMES:
        raise ValueError(f"{RUNTIME_VARIABLE}={choice!r}: choose auto, {' or '.join(RUNTIMES)}")
    return choice


PRECISION_VARIABLE = "COLLAT_CPU_PRECISION"
PRECISIONS = ("fp32", "bf16", "int8")
# INFERENCE_PRECISION_HINT. INT8 is a quantized model file; what it leaves in floating point (NNCF's accuracy control
# keeps some layers there) runs FP32.
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# /proc/cpuinfo flags of INT8 dot-product instructions: where OpenVINO's INT8 kernels outrun its FP32 ones, and where
# the card's INT8 measurement was made (without them oneDNN's INT8 path rounds differently).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_capabilities() -> list[str]:
    """What OpenVINO says this CPU computes natively (``BF16`` on AVX-512 BF16 or AMX; ``INT8`` on any x86), and
    ``VNNI`` where the CPU has INT8 dot-product instructions (:data:`VNNI_FLAGS`)."""
    try:
        import openvino as ov

        caps = [str(c).upper() for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # noqa: BLE001 - no OpenVINO, or a CPU plugin that cannot say: assume FP32 only
        return ["FP32"]
    return caps + (["VNNI"] if _cpu_flags() & set(VNNI_FLAGS) else [])


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def choose_precision(requested: str | None, accepted: Sequence[str], capabilities: Sequence[str],
                     runtime: str = "openvino", int8_model: bool = False) -> tuple[str, str]:
    """(precision, why) for one network. Without an override: INT8 where the repository has the quantized model,
    the CPU has VNNI and the model card accepts int8 (measured); else BF16 where the CPU has BF16 units and the
    card accepts it; else FP32. ``requested`` (``COLLAT_CPU_PRECISION``) wins where the hardware, the runtime
    and the repository can do it, and says when the card never measured it."""
    caps = {c.upper() for c in capabilities}
    accepted = [a.lower() for a in accepted] or ["fp32"]
    if requested:
        choice = requested.strip().lower()
        if choice not in PRECISIONS:
            raise ValueError(f"{PRECISION_VARIABLE}={requested!r}: choose {', '.join(PRECISIONS)}")
        if choice == "fp32":
            return "fp32", f"{PRECISION_VARIABLE}=fp32"
        if runtime != "openvino":
            return "fp32", f"{PRECISION_VARIABLE}={choice}, but {runtime} runs FP32 only"
        if choice == "int8" and not int8_model:
            return "fp32", f"{PRECISION_VARIABLE}=int8, but no INT8-quantized model is in this repository"
        if choice.upper() not in caps:
            return "fp32", f"{PRECISION_VARIABLE}={choice}, but this CPU has no {choice.upper()} units"
        unmeasured = "" if choice in accepted else " (the model card has not accepted it: unmeasured)"
        return choice, f"{PRECISION_VARIABLE}={choice}{unmeasured}"
    if runtime == "openvino" and "int8" in accepted and int8_model and {"INT8", "VNNI"} <= caps:
        return "int8", ("the CPU has INT8 dot-product units (VNNI) and the model card accepts int8 (measured on "
                        "held-out phantoms)")
    if runtime == "openvino" and "bf16" in accepted and "BF16" in caps:
        return "bf16", "the CPU has BF16 units and the model card accepts bf16 (measured on held-out phantoms)"
    if "bf16" in accepted and runtime == "openvino":
        return "fp32", "the model card accepts bf16 but this CPU has no BF16 units"
    return "fp32", "the model card accepts fp32 only" if runtime == "openvino" else f"{runtime} runs FP32 only"


def _model_json(version_dir: str) -> dict:
    try:
        with open(os.path.join(version_dir, "model.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def accepted_precisions(version_dir: str) -> list[str]:
    """The precisions the network's card accepts, from ``model.json`` beside it (FP32 alone when unsaid)."""
    return list(_model_json(version_dir).get("accepted_precisions") or ["fp32"])


def int8_model_path(version_dir: str) -> str | None:
    """The quantized IR that ``model.json`` names (the export copies it only from the weights it was made from),
    when it is there; None otherwise."""
    name = _model_json(version_dir).get("int8_model")
    path = os.path.join(version_dir, str(name)) if name else None
    return path if path and os.path.isfile(path) and os.path.isfile(path[:-4] + ".bin") else None


class OpenVINORunner:
    """One network in OpenVINO. ``static_shapes``: compiled for each input shape it meets, the last one kept,
    instead of once for any shape: 3D-MROD-Net's grid follows the scan, and its graph compiled for the one grid
    ran 1.5x faster and held 0.2 GB less than the dynamic graph on the same series (a new grid costs one
    compilation, about 1 s; a hospital's protocol keeps its grid)."""

    def __init__(self, path: str, threads: int, output_names: Sequence[str], precision: str = "fp32",
                 static_shapes: bool = False) -> None:
        import openvino as ov

        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]}
        if threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.core = ov.Core()
        self.model = self.core.read_model(path)
        self.output_names = list(output_names)
        self.static_shapes = static_shapes
        self.shapes: dict[str, tuple[int, ...]] | None = None
        if not static_shapes:
            self._compile(self.model)
        self.version = ov.get_version()

    def _compile(self, model) -> None:
        self.request = None  # the old compiled model's buffers go before the new one's are made
        self.compiled = self.core.compile_model(model, "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in self.output_names]

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.static_shapes:
            shapes = {name: tuple(array.shape) for name, array in feed.items()}
            if shapes != self.shapes:
                self.shapes = None  # until the new shape has compiled: a shape that fails leaves nothing half-made
                model = self.model.clone()
                model.reshape({name: list(shape) for name, shape in shapes.items()})
                self._compile(model)
                self.shapes = shapes
        results = self.request.infer(feed)
        # Copies: the request reuses its output buffers, and a second shape group runs before Triton sends these.
        return [np.array(results[output], copy=True) for output in self.outputs]


class OnnxRuntimeRunner:
    def __init__(self, path: str, threads: int, output_names: Sequence[str], precision: str = "fp32",
                 static_shapes: bool = False) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.output_names = list(output_names)
        self.version = ort.__version__

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feed)


def make_runner(runtime: str, path: str, threads: int, output_names: Sequence[str], precision: str = "fp32",
                static_shapes: bool = False):
    """``static_shapes`` applies to OpenVINO (ONNX Runtime plans any shape alike)."""
    return (OpenVINORunner if runtime == "openvino" else OnnxRuntimeRunner)(path, threads, output_names, precision,
                                                                            static_shapes)


def run_in_chunks(runner, feed: dict[str, np.ndarray], chunk: int) -> list[np.ndarray]:
    """The batch run ``chunk`` samples at a time and the outputs put back together: the runtime then holds the
    intermediate tensors of ``chunk`` samples, not of the whole batch (the U-Net's 12 slabs of a patient took
    0.88 GB in OpenVINO at once, 0.44 GB four at a time, and ran no slower). ``chunk`` 0 runs the batch whole."""
    size = next(iter(feed.values())).shape[0]
    if chunk <= 0 or size <= chunk:
        return runner.run(feed)
    parts = [runner.run({n: a[i:i + chunk] for n, a in feed.items()}) for i in range(0, size, chunk)]
    return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


def split_batch(stacked: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Undo the stacking: one array per request, in order."""
    bounds = np.cumsum(sizes)[:-1]
    return np.split(stacked, bounds, axis=0)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.runtime = choose_runtime(params.get("runtime"))
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        int8_path = int8_model_path(version_dir)
        self.precision, why = choose_precision(os.environ.get(PRECISION_VARIABLE), accepted_precisions(version_dir),
                                               cpu_capabilities() if self.runtime == "openvino" else ["FP32"],
                                               self.runtime, int8_path is not None)
        if self.precision == "int8":
            path = int8_path
        self.runner = make_runner(self.runtime, path, int(params.get("intra_op_threads", "0")), self.output_names,
                                  self.precision, params.get("static_shapes", "0") == "1")
        self.chunk = int(params.get("run_chunk", "0"))
        message = (f"{config['name']}: {self.runtime} {self.runner.version} on the CPU, {self.precision.upper()} "
                   f"({why})")
        if pb_utils is not None and hasattr(pb_utils, "Logger"):
            pb_utils.Logger.log_info(message)
        else:  # pragma: no cover - older stubs
            print(message, flush=True)

    def execute(self, requests: list) -> list:
        arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names] for r in requests]
        responses: list = [None] * len(requests)
        for group in group_by_shape([tuple(a.shape for a in per) for per in arrays]):
            try:
                # One request (the usual case for a whole patient's slabs) is fed as is: no 50 MB copy.
                feed = {n: arrays[group[0]][k] if len(group) == 1 else
                        np.concatenate([arrays[i][k] for i in group], axis=0)
                        for k, n in enumerate(self.input_names)}
                results = run_in_chunks(self.runner, feed, self.chunk)
                sizes = [arrays[i][0].shape[0] for i in group]
                pieces = [split_batch(r, sizes) for r in results]
                for j, i in enumerate(group):
                    tensors = [pb_utils.Tensor(n, np.ascontiguousarray(p[j]))
                               for n, p in zip(self.output_names, pieces, strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as exc:  # one bad group must not take the model down
                error = pb_utils.TritonError(f"{self.runtime} failed: {exc}")
                for i in group:
                    responses[i] = pb_utils.InferenceResponse(error=error)
        return responses

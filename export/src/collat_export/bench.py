"""``python -m collat_export.bench``: FLOPs, PyTorch eager and ONNX Runtime times of each network.

Not a test: timings on shared machines are noisy, so each figure is the median of several
runs after a warm-up, and the two runtimes are measured in the same process, one after
the other, on the same input.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .flops import count_flops, parameter_count
from .io_spec import example_inputs, network_io, run_torch
from .networks import build_network
from .onnx_export import compile_openvino, export_onnx, openvino_available
from .presets import MODEL_KINDS, get_preset


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class NetworkRunners:
    """One network ready to run in both runtimes on the same input (the ONNX model is held in memory)."""

    model: str
    preset: str
    params: int
    input: str
    flops: float
    run_torch: Callable[[], object]
    run_ort: Callable[[], object]
    run_openvino: Callable[[], object] | None  # None where OpenVINO is not installed
    run_openvino_bf16: Callable[[], object] | None = None  # None also where the CPU has no BF16 units


def network_runners(model: str, preset_name: str, threads: int) -> NetworkRunners:
    import onnxruntime as ort

    preset = get_preset(model, preset_name)
    net = build_network(preset).eval()
    inputs = example_inputs(preset)
    names = [t.name for t in network_io(preset).inputs]
    flops = count_flops(net, *(torch.from_numpy(inputs[n]) for n in names))
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(net, preset, tmp)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(Path(tmp) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        run_openvino = _openvino_runner(Path(tmp) / "model.onnx", inputs, threads)
        run_bf16 = _openvino_runner(Path(tmp) / "model.onnx", inputs, threads, "bf16") if has_bf16() else None
    return NetworkRunners(
        model, preset_name, parameter_count(net),
        " ".join(f"{k}:{'x'.join(map(str, v.shape))}" for k, v in inputs.items()), flops,
        lambda: run_torch(net, preset, inputs), lambda: session.run(None, inputs), run_openvino, run_bf16)


def has_bf16() -> bool:
    """OpenVINO reports BF16 units on this CPU (AVX-512 BF16 or AMX): the served networks may run BF16 here."""
    from collat_ensemble.server.network_model import cpu_capabilities

    return openvino_available() and "BF16" in cpu_capabilities()


def _openvino_runner(onnx_path: Path, inputs: dict, threads: int,
                     precision: str = "fp32") -> Callable[[], object] | None:
    """The model compiled (in memory) as the served model compiles it."""
    if not openvino_available():
        return None
    request = compile_openvino(onnx_path, threads, precision).create_infer_request()
    return lambda: request.infer(inputs)


def bench_network(model: str, preset_name: str, repeats: int, threads: int) -> dict[str, float | str]:
    runners = network_runners(model, preset_name, threads)
    torch_s = median_seconds(runners.run_torch, repeats)
    ort_s = median_seconds(runners.run_ort, repeats)
    return {
        "model": model, "preset": preset_name, "params": runners.params, "input": runners.input,
        "gflop": runners.flops / 1e9, "torch_s": torch_s, "ort_s": ort_s, "ort_gflops": runners.flops / 1e9 / ort_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=["full", "tiny"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats} (median after one warm-up) torch {torch.__version__}")
    print(f"{'model':5} {'preset':6} {'input':34} {'GFLOP':>8} {'torch s':>8} {'ORT s':>7} "
          f"{'ORT GFLOP/s':>11} {'ORT/torch':>9}")
    for model in MODEL_KINDS:
        r = bench_network(model, args.preset, args.repeats, args.threads)
        print(f"{r['model']:5} {r['preset']:6} {r['input']:34} {r['gflop']:8.2f} {r['torch_s']:8.3f} "
              f"{r['ort_s']:7.3f} {r['ort_gflops']:11.1f} {r['torch_s'] / r['ort_s']:8.2f}x")


if __name__ == "__main__":
    main()

"""INT8 for the CPU: a network's ONNX quantized after training by NNCF, with accuracy control, into an OpenVINO IR
(``model_int8.xml`` + ``.bin``) kept beside the weights it came from.

The IR is made once, from the checkpoint, on phantom series prepared as the server prepares them (the training
samples' builders; calibration and validation seeds of their own, never the held-out ones). NNCF's accuracy
control keeps layers in floating point until the quantized network scores within :data:`MAX_SCORE_DROP` of the
FP32 one against the phantoms' truth on the validation series (the U-Net: Dice of the thresholded lesion;
3D-MROD-Net: R^2 of the maps). Agreement with FP32 itself is not the measure: on the demo U-Net's validation
series INT8 moved 3 % of the lesion's voxels across the threshold, both ways, for 0.008 of Dice against the truth.

Whether the served path may then run it is a separate, held-out measurement (``collat-train precision``),
recorded in the card beside the IR's own record (``int8``), which names the checkpoint's digest: an IR made from
other weights is never copied into a model repository.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collat_ensemble.contrast import DSC_CONVERSION
from collat_ensemble.hypoperfusion import lesion_mask
from collat_ensemble.phantom import generate_case
from collat_ensemble.preprocess import to_slabs

from .checkpoint import load_checkpoint
from .onnx_export import INT8_BIN, INT8_XML, dsc_conversion, export_onnx, sha256_file
from .training.data import case_kind, hypo_sample, mrod_sample

MAX_SCORE_DROP = 0.005
# Training seeds of their own: never the held-out 0-399 nor the ranges the weights were trained on.
CALIBRATION_SEEDS = range(1_400_000, 1_400_024)
VALIDATION_SEEDS = range(1_400_100, 1_400_112)


class QuantizationUnavailable(RuntimeError):
    """NNCF or OpenVINO is not installed: INT8 cannot be made here."""


def _nncf():
    try:
        import nncf
        import openvino  # noqa: F401
    except ImportError as exc:
        raise QuantizationUnavailable(
            f"INT8 needs NNCF and OpenVINO ({exc.name} is not installed): pip install './export[int8]'") from None
    return nncf


def network_samples(model: str, preset, seeds: Iterable[int], dsc_conversion: str | None = None,
                    ) -> list[dict[str, np.ndarray]]:
    """One item per phantom series: the network's input as the served preprocessing makes it (the training
    samples' builders, ``training.data``) and the truth on the network's grid. The U-Net's: phantom version 4's
    mix in native poses, the slabs with the true lesion's slabs; 3D-MROD-Net's: DCE and DSC in turn, the input with
    the reference maps and the brain (``dsc_conversion``: the weights' own)."""
    items: list[dict[str, np.ndarray]] = []
    for seed in seeds:
        if model == "hypo":
            sample = hypo_sample(generate_case(seed, space="native", kind=case_kind(seed, "mixed")))
            slabs = to_slabs(sample.volume.astype(np.float32))
            items.append({"IMAGE": slabs, "NIHSS": np.full((len(slabs), 1), sample.nihss, np.float32),
                          "truth": to_slabs(sample.lesion[None].astype(np.float32)) >= 0.5})
        else:
            case = generate_case(seed, modality="dsc" if seed % 2 else "dce")
            sample = mrod_sample(case, preset, register=False, dsc_conversion=dsc_conversion or DSC_CONVERSION)
            items.append({"MROD_INPUT": sample.x[None].astype(np.float32), "truth": sample.target.astype(np.float32),
                          "mask": sample.mask})
    return items


INPUT_NAMES = ("IMAGE", "NIHSS", "MROD_INPUT")


def network_inputs(item: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in item.items() if k in INPUT_NAMES}


def calibration_feeds(items: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """One feed per network run the server makes alone: a slab (the U-Net), a series (3D-MROD-Net)."""
    feeds = []
    for item in items:
        inputs = network_inputs(item)
        size = len(next(iter(inputs.values())))
        feeds += [{k: v[i:i + 1] for k, v in inputs.items()} for i in range(size)]
    return feeds


def truth_score(model: str, outputs: Sequence[np.ndarray], items: Sequence[dict[str, np.ndarray]]) -> float:
    """How well a network's outputs match the phantoms' truth, pooled over the items: the U-Net's Dice of the lesion
    at the served threshold (over every slab), 3D-MROD-Net's R^2 of the maps inside the brain."""
    if model == "hypo":
        hit = found = true = 0
        for out, item in zip(outputs, items, strict=True):
            lesion, truth = lesion_mask(out, core=False, brain=True), item["truth"]  # the served threshold
            hit, found, true = hit + int((lesion & truth).sum()), found + int(lesion.sum()), true + int(truth.sum())
        return 1.0 if found + true == 0 else 2.0 * hit / (found + true)
    residual = total = 0.0
    for out, item in zip(outputs, items, strict=True):
        inside = np.broadcast_to(item["mask"], item["truth"].shape)
        truth, maps = item["truth"][inside], np.asarray(out)[0][inside]
        residual += float(np.sum((truth - maps) ** 2))
        total += float(np.sum((truth - truth.mean()) ** 2))
    return 1.0 - residual / max(total, 1e-12)


def _run(compiled, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    return [np.array(request.infer(feed)[compiled.output(0)], copy=True) for feed in feeds]


def quantize_onnx(onnx_path: Path, model: str, calibration: Sequence[dict[str, np.ndarray]],
                  validation: Sequence[dict[str, np.ndarray]], out_dir: Path, *, threads: int = 0,
                  max_drop: float = MAX_SCORE_DROP) -> dict[str, Any]:
    """``model_int8.xml``/``.bin`` in ``out_dir`` from ``onnx_path``; returns what the card records of it.
    ``calibration``: network feeds; ``validation``: :func:`network_samples` items (inputs and truth)."""
    nncf = _nncf()
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    fp32 = core.read_model(str(onnx_path))

    def score(compiled, items: Iterable[dict[str, np.ndarray]]) -> float:
        items = list(items)
        return truth_score(model, _run(compiled, [network_inputs(i) for i in items]), items)

    started = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        fp32, nncf.Dataset(list(calibration)), nncf.Dataset(list(validation), network_inputs), score,
        max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration))
    seconds = time.perf_counter() - started
    scores = {name: round(score(core.compile_model(m, "CPU", config), validation), 5)
              for name, m in (("fp32", fp32), ("int8", quantized))}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:  # both files appear together or not at all
        ov.save_model(quantized, str(Path(tmp) / INT8_XML), compress_to_fp16=False)
        for name in (INT8_BIN, INT8_XML):
            shutil.move(str(Path(tmp) / name), out_dir / name)
    return {"tool": f"nncf {nncf.__version__}, openvino {ov.get_version()}",
            "method": "post-training quantization with accuracy control (mixed preset: symmetric weights, "
                      "asymmetric activations)",
            "validation_metric": "Dice of the thresholded lesion against the phantoms' truth, pooled over the slabs"
                                 if model == "hypo" else "R^2 of the maps inside the brain, pooled",
            "validation_fp32": scores["fp32"], "validation_int8": scores["int8"], "max_drop": max_drop,
            "calibration_samples": len(calibration), "validation_series": len(validation),
            "quantize_seconds": round(seconds, 1)}


def quantize_checkpoint(checkpoint: Path, *, calibration_seeds: Sequence[int] = CALIBRATION_SEEDS,
                        validation_seeds: Sequence[int] = VALIDATION_SEEDS, threads: int = 0,
                        max_drop: float = MAX_SCORE_DROP,
                        progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Quantize the weights in ``checkpoint`` into ``model_int8.*`` beside it; returns the card's ``int8`` record
    (it names the checkpoint's digest, which the export checks before it ships the IR)."""
    _nncf()
    loaded = load_checkpoint(checkpoint)
    model = loaded.preset.model
    progress(f"preprocessing {len(calibration_seeds)} calibration and {len(validation_seeds)} validation series")
    conversion = dsc_conversion(str(checkpoint), model)
    calibration = calibration_feeds(network_samples(model, loaded.preset, calibration_seeds, conversion))
    validation = network_samples(model, loaded.preset, validation_seeds, conversion)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(loaded.network, loaded.preset, tmp, checkpoint=str(checkpoint))
        progress("quantizing (NNCF, accuracy control)")
        record = quantize_onnx(Path(tmp) / "model.onnx", model, calibration, validation, checkpoint.parent,
                               threads=threads, max_drop=max_drop)
    return {**record, "checkpoint_sha256": sha256_file(checkpoint),
            "calibration_seeds": [min(calibration_seeds), max(calibration_seeds)],
            "validation_seeds": [min(validation_seeds), max(validation_seeds)], "files": [INT8_XML, INT8_BIN]}


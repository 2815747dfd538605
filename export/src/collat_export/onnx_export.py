"""PyTorch -> ONNX with a numerical parity check against ONNX Runtime.

The export traces the inference graph only (3D-MROD-Net's ordinal head is a training
aid and is left out because ``forward`` does not use it). Parity is checked on an input
whose batch and MROD spatial sizes differ from the tracing input, so a dynamic axis that
was accidentally frozen fails here rather than in production.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from collat_ensemble.contrast import trained_dsc_conversion
from collat_ensemble.server.network_model import OPENVINO_HINTS
from collat_ensemble.server.versions import ONNX_OPSET
from collat_ensemble.territory import CPSRule, default_rule

from .io_spec import example_inputs, network_io, run_torch, spatial_multiple, validate_inputs
from .presets import Preset

FP32_PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """Two runtimes disagree by more than the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    reference: str
    candidate: str
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    input_shapes: dict[str, list[int]]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"parity {self.candidate} vs {self.reference}: max |diff| {self.max_abs_diff:.3g}, "
                f"mean |diff| {self.mean_abs_diff:.3g} (tolerance {self.tolerance:g}) {verdict}")


def compare(reference: np.ndarray, candidate: np.ndarray, *, reference_name: str, candidate_name: str,
            tolerance: float, inputs: dict[str, np.ndarray]) -> ParityReport:
    if reference.shape != candidate.shape:
        raise ParityError(f"{candidate_name} output shape {candidate.shape} != {reference_name} {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return ParityReport(reference_name, candidate_name, float(diff.max()), float(diff.mean()), tolerance,
                        {k: list(v.shape) for k, v in inputs.items()})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parity_inputs(preset: Preset) -> dict[str, np.ndarray]:
    """A batch of 2 and, for MROD, a grid other than the tracing grid: exercises every dynamic axis."""
    g = preset.geometry
    if preset.model == "mrod":
        step = spatial_multiple(preset)
        return example_inputs(preset, batch=2, seed=1, slices=max(1, g.slices // 2 + 1),
                              height=g.height + step, width=max(step, g.width - step))
    return example_inputs(preset, batch=2, seed=1)


def run_onnxruntime(onnx_path: Path, inputs: dict[str, np.ndarray], threads: int = 0) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in inputs.items() if k in names})[0]


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def compile_openvino(onnx_path: Path, threads: int = 0, precision: str = "fp32"):
    """The ONNX file compiled by OpenVINO for the CPU as the served model compiles it: FP32 unless asked
    (OpenVINO's own default on CPUs with bfloat16 units is BF16; a network serves BF16 only where its card
    accepts it), latency hint, ``threads`` (0: OpenVINO's choice)."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    return core.compile_model(core.read_model(str(onnx_path)), "CPU", config)


def run_openvino(onnx_path: Path, inputs: dict[str, np.ndarray], threads: int = 0) -> np.ndarray:
    compiled = compile_openvino(onnx_path, threads)
    names = {name for port in compiled.inputs for name in port.get_names()}  # a fused input keeps its name too
    return np.array(compiled.create_infer_request().infer({k: v for k, v in inputs.items() if k in names})[
        compiled.output(0)])


def _card(checkpoint: str | None) -> dict | None:
    """The weights' model card beside their checkpoint; None without a readable one."""
    if checkpoint is None:
        return None
    try:
        card = json.loads(Path(checkpoint).with_name("model_card.json").read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def not_for_clinical_use(checkpoint: str | None) -> bool | None:
    """What the weights' model card says, so that every result they give can say it too (DICOM outputs print
    "research use only" from it). Random weights (no checkpoint) are never clinical; no card: unknown."""
    if checkpoint is None:
        return True
    card = _card(checkpoint)
    return bool(card["not_for_clinical_use"]) if card is not None and "not_for_clinical_use" in card else None


def _mrod_training(checkpoint: str | None) -> dict | None:
    card = _card(checkpoint)
    training = card.get("training") if card is not None else None
    return training if isinstance(training, dict) else None


def trained_modalities(checkpoint: str | None, model: str) -> list[str] | None:
    """The perfusion modalities 3D-MROD-Net weights were trained on, from their model card, so that the server
    grades only series of a kind the network has seen. Cards older than the field were DCE-only (the training data
    had no other kind); random weights have seen nothing; the U-Net has no perfusion input (None)."""
    if model != "mrod":
        return None
    training = _mrod_training(checkpoint)
    return [] if training is None else [str(m) for m in training.get("modalities", ["dce"])]


def dsc_conversion(checkpoint: str | None, model: str) -> str | None:
    """How the DSC series 3D-MROD-Net weights were trained on were converted (``collat_ensemble.contrast``), so
    that the server converts a DSC series the same way for them; None when they saw no DSC. Cards from before the
    field used version 1."""
    training = _mrod_training(checkpoint) if model == "mrod" else None
    if training is None or "dsc" not in training.get("modalities", ["dce"]):
        return None
    return trained_dsc_conversion(training)


def _unet_card_entry(checkpoint: str | None, model: str, key: str) -> dict | None:
    card = _card(checkpoint) if model == "hypo" else None
    value = card.get(key) if card is not None else None
    return value if isinstance(value, dict) else None


def lesion_calibration(checkpoint: str | None, model: str) -> dict | None:
    """The U-Net weights' lesion volume calibration from their model card (``collat-train fit-volume``), which the
    server's postprocessing applies; None without one (the lesion is then probability >= 0.5)."""
    return _unet_card_entry(checkpoint, model, "lesion_calibration")


def training_domain(checkpoint: str | None, model: str) -> dict | None:
    """What the U-Net weights were trained on (``collat-train domain``), from their model card: the server withholds
    DEFUSE 3 for a scan outside it; None without one (the gate then reports "unknown")."""
    return _unet_card_entry(checkpoint, model, "training_domain")


def _card_cps_rule(checkpoint: str | Path | None) -> CPSRule | None:
    """The CPS rule in the weights' model card (``collat-train fit-cps --update-card``); None without one. A broken
    one raises :class:`InputValidationError` naming the card, before anything is built on it."""
    card = _card(None if checkpoint is None else str(checkpoint))
    value = card.get("cps_rule") if card is not None else None
    if value is None:
        return None
    return CPSRule.from_dict(value, f"{Path(str(checkpoint)).with_name('model_card.json')}: cps_rule")


def cps_rule(checkpoint: str | None, model: str) -> dict | None:
    """The CPS rule fitted on the 3D-MROD-Net weights' own maps, from their model card, for ``model.json``: the
    server grades with it; None without one (the server's default rule then)."""
    rule = _card_cps_rule(checkpoint) if model == "mrod" else None
    return None if rule is None else rule.as_dict()


def served_cps_rule(checkpoint: str | Path) -> CPSRule:
    """The rule the server grades these 3D-MROD-Net weights' maps with: their card's, else the default one."""
    return _card_cps_rule(checkpoint) or default_rule()


def accepted_precisions(checkpoint: str | None) -> list[str]:
    """The CPU precisions the weights' model card accepts (``collat-train precision`` measured them on held-out
    phantoms), which the served network may then run in where the CPU has the units; FP32 alone when unsaid. INT8
    only with its IR beside the weights (:func:`shipped_int8`)."""
    card = _card(checkpoint)
    precision = card.get("precision") if card is not None else None
    accepted = precision.get("accepted") if isinstance(precision, dict) else None
    accepted = [str(p) for p in accepted] if isinstance(accepted, list) and accepted else ["fp32"]
    return [p for p in accepted if p != "int8" or shipped_int8(checkpoint) is not None]


INT8_XML = "model_int8.xml"
INT8_BIN = "model_int8.bin"


def shipped_int8(checkpoint: str | Path | None) -> Path | None:
    """The INT8 IR beside these weights (``collat-train quantize``) when their card says it was made from them
    (the checkpoint's digest), else None: an IR left from other weights is never served."""
    card = _card(str(checkpoint) if checkpoint is not None else None)
    record = card.get("int8") if card is not None else None
    if not isinstance(record, dict):
        return None
    folder = Path(checkpoint).parent
    xml = folder / INT8_XML
    if not xml.is_file() or not (folder / INT8_BIN).is_file():
        return None
    return xml if record.get("checkpoint_sha256") == sha256_file(Path(checkpoint)) else None


def export_onnx(network: torch.nn.Module, preset: Preset, out_dir: str | Path, *,
                tolerance: float = FP32_PARITY_TOLERANCE, checkpoint: str | None = None) -> ParityReport:
    """Write ``model.onnx`` and ``model.json`` into ``out_dir``; raise :class:`ParityError` past tolerance."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    io = network_io(preset)
    network.eval()
    trace = example_inputs(preset, batch=1, seed=0)
    validate_inputs(preset, trace)
    args = tuple(torch.from_numpy(trace[t.name]) for t in io.inputs)
    dynamic = {t.name: {a: f"{t.name.lower()}_{a}" for a in t.dynamic_axes} for t in (*io.inputs, *io.outputs)}
    onnx_path = out / "model.onnx"
    tmp_path = out / "model.onnx.partial"
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but it is the one
        # that handles D=1 and fully dynamic 3D shapes without specialising them.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network, args, str(tmp_path), opset_version=ONNX_OPSET, dynamo=False,
            input_names=[t.name for t in io.inputs], output_names=[t.name for t in io.outputs],
            dynamic_axes=dynamic, do_constant_folding=True,
        )
    onnx.checker.check_model(onnx.load(str(tmp_path)), full_check=True)

    check = parity_inputs(preset)
    report = compare(run_torch(network, preset, check), run_onnxruntime(tmp_path, check),
                     reference_name="pytorch", candidate_name="onnxruntime", tolerance=tolerance, inputs=check)
    reports = [report]
    if openvino_available():  # the CPU runtime the server prefers is held to the same tolerance
        reports.append(compare(run_torch(network, preset, check), run_openvino(tmp_path, check),
                               reference_name="pytorch", candidate_name="openvino", tolerance=tolerance,
                               inputs=check))
    failed = [r for r in reports if not r.passed]
    if failed:
        tmp_path.unlink(missing_ok=True)
        raise ParityError(failed[0].line())
    tmp_path.replace(onnx_path)
    int8 = shipped_int8(checkpoint)
    if int8 is not None:  # the IR its card names, measured on the served path by `collat-train precision`
        for name in (INT8_XML, INT8_BIN):
            shutil.copyfile(int8.with_name(name), out / name)
    meta = {
        **preset.describe(),
        "triton_name": io.triton_name,
        "opset": ONNX_OPSET,
        "inputs": [asdict(t) for t in io.inputs],
        "outputs": [asdict(t) for t in io.outputs],
        # A fine 3D-MROD-Net halves H and W before its encoder: engine profiles must not go below this.
        "spatial_multiple": spatial_multiple(preset) if preset.model == "mrod" else None,
        "sha256": sha256_file(onnx_path),
        "checkpoint": checkpoint,
        "not_for_clinical_use": not_for_clinical_use(checkpoint),
        "modalities": trained_modalities(checkpoint, preset.model),
        "dsc_conversion": dsc_conversion(checkpoint, preset.model),
        "lesion_calibration": lesion_calibration(checkpoint, preset.model),
        "training_domain": training_domain(checkpoint, preset.model),
        "cps_rule": cps_rule(checkpoint, preset.model),
        "accepted_precisions": accepted_precisions(checkpoint),
        "int8_model": INT8_XML if int8 is not None else None,
        "torch_version": torch.__version__,
        "parity": asdict(report),
        "parity_openvino": asdict(reports[1]) if len(reports) > 1 else None,
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report

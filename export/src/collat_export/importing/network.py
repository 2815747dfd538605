"""Import a network trained elsewhere (ONNX or TorchScript, described by its card) as a served network.

Nothing is written until the network has passed every check: the card against the contract's rules, the graph
against the card (names, ranks, fixed sizes, opset), the ONNX checker and shape inference on the wrapped graph, a
phantom case through it (finite outputs in the declared range, the shapes the steps read), and the CPU runtimes'
parity. A failure is one line that names the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from collat_contract.network_card import CardError, NetworkCard, parse_card
from collat_contract.tensors import NetworkIO, mrod_io, unet_io

from .adapter import UNET_SLAB, Geometry, NetworkImportError, adapt, check_graph, geometry

PARITY_TOLERANCE = 1e-4
RANGE_SLACK = 1e-3  # float rounding at the ends of a declared range
SMOKE_SEED = 7  # the phantom case every import is run on (a held-out seed of the evaluation range)
MODEL_OF_ROLE = {"collateral": "mrod", "hypoperfusion": "hypo"}


@dataclass(frozen=True)
class ImportedNetwork:
    """What the repository builder needs of an imported network."""

    card: NetworkCard
    io: NetworkIO
    geometry: Geometry
    folder: Path  # holds model.onnx (wrapped) and model.json


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_card(path: Path) -> tuple[NetworkCard, dict, str]:
    """The checked card, its mapping and its digest; YAML or JSON (JSON is YAML)."""
    import yaml

    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except OSError as exc:
        raise NetworkImportError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise NetworkImportError(f"{path}: not YAML or JSON ({str(exc).splitlines()[0]})") from None
    try:
        return parse_card(data), data, sha256_bytes(raw)
    except CardError as exc:
        raise NetworkImportError(f"{path}: {exc}") from None


def _example_shape(card: NetworkCard, ref_layout: str) -> list[int]:
    """An input shape for tracing a TorchScript network (batch 1; a 2D network sees one slab's slices)."""
    rows, cols = card.inplane or (128, 128)
    if card.role == "hypoperfusion":
        sizes = {"N": UNET_SLAB if card.is_2d else 1, "C": len(card.inputs["image"].channels) * card.context_slices,
                 "D": UNET_SLAB, "H": rows, "W": cols}
    else:
        sizes = {"N": (card.slices or 20) if card.is_2d else 1, "C": card.frames or 0, "D": card.slices or 20,
                 "H": rows, "W": cols}
    return [sizes[a] for a in ref_layout]


def torchscript_to_onnx(path: Path, card: NetworkCard) -> onnx.ModelProto:
    """A TorchScript network traced to ONNX with the card's tensor names, batch (and slices) left free."""
    import tempfile

    import torch

    from collat_ensemble.server.versions import ONNX_OPSET

    try:
        network = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file that is not TorchScript
        raise NetworkImportError(f"{path}: not a TorchScript network ({type(exc).__name__})") from None
    args, names, dynamic = [], [], {}
    image = next(iter(card.inputs.values()))  # the image or series: the first input
    batch = _example_shape(card, image.layout)[0]
    for role, ref in card.inputs.items():
        args.append(torch.zeros([batch, 1] if role == "nihss" else _example_shape(card, ref.layout)))
        names.append(ref.name)
        dynamic[ref.name] = {0: "n"}
    outputs = [ref.name for ref in card.outputs.values()]
    dynamic.update({name: {0: "n"} for name in outputs})
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = Path(tmp) / "network.onnx"
        try:
            torch.onnx.export(network, tuple(args), str(target), opset_version=ONNX_OPSET, dynamo=False,
                              input_names=names, output_names=outputs, dynamic_axes=dynamic)
        except Exception as exc:  # noqa: BLE001
            raise NetworkImportError(f"{path}: cannot be traced with the card's inputs "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        return onnx.load(str(target))


def load_network(path: Path, card: NetworkCard) -> onnx.ModelProto:
    if not path.is_file():
        raise NetworkImportError(f"{path}: no such file (the card's network)")
    if path.suffix.lower() != ".onnx":
        return torchscript_to_onnx(path, card)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises decode and checker errors of several types
        raise NetworkImportError(f"{path}: not a valid ONNX model ({str(exc).splitlines()[0][:200]})") from None
    return model


def smoke_inputs(card: NetworkCard, geo: Geometry) -> dict[str, np.ndarray]:
    """The served steps' input for one phantom case: what the network will see in production."""
    from collat_ensemble.phantom import generate_case
    from collat_ensemble.preprocess import prepare_diffusion, prepare_perfusion

    case = generate_case(SMOKE_SEED, modality=card.modalities[0] if card.modalities else "dce")
    if card.role == "hypoperfusion":
        prepared = prepare_diffusion(case.dwi, case.adc, case.diffusion_affine, nihss=case.nihss, side=None)
        return {"IMAGE": prepared.slabs[:2], "NIHSS": prepared.nihss[:2]}
    prepared = prepare_perfusion(case.perfusion.astype(np.float32), case.perfusion_affine, case.frame_seconds,
                                 frames=geo.channels, frame_interval=float(geo.frame_seconds or 0), slices=geo.slices,
                                 height=geo.height, width=geo.width, register=False)
    return {"MROD_INPUT": prepared.network_input[None]}


def _run(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from ..onnx_export import run_onnxruntime

    return run_onnxruntime(path, inputs)


def check_outputs(where: Path, card: NetworkCard, output: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    """Finite, in the served range, of the shape the steps read."""
    first = next(iter(inputs.values()))
    expected = (first.shape[0], 1, *first.shape[2:]) if card.role == "hypoperfusion" else \
        (first.shape[0], 5, *first.shape[2:])
    key = "outputs.lesion" if card.role == "hypoperfusion" else "outputs.phases"
    if output.shape != expected:
        raise NetworkImportError(f"{where}: {key}: the network gives {output.shape} for {first.shape}, the step "
                                 f"reads {expected} (check the layout)")
    if not np.all(np.isfinite(output)):
        raise NetworkImportError(f"{where}: {key}: NaN or infinite output on a phantom case")
    low, high = (0.0, 1.0) if card.role == "hypoperfusion" else (-1.0, 1.0)
    if output.min() < low - RANGE_SLACK or output.max() > high + RANGE_SLACK:
        said = ("range [{:g}, {:g}]".format(*(card.outputs["phases"].value_range or (-1.0, 1.0)))
                if card.role == "collateral" else f"activation {card.outputs['lesion'].activation}")
        raise NetworkImportError(f"{where}: {key}: output {output.min():.3g}..{output.max():.3g} is outside the "
                                 f"declared range (card: {said}) on a phantom case")


def _card_gates(card_path: Path, card: NetworkCard) -> dict:
    """A U-Net card's own ``training_domain`` and ``lesion_calibration`` (weights trained here write them), checked
    as the server will read them; absent, the server's training-domain gate and calibration stay off."""
    from collat_ensemble.hypoperfusion import VolumeCalibration
    from collat_ensemble.quality import TrainingDomain

    gates = {"lesion_calibration": None, "training_domain": None}
    if card.role != "hypoperfusion":
        return gates
    for key, reader in (("training_domain", TrainingDomain.from_dict), ("lesion_calibration",
                                                                         VolumeCalibration.from_dict)):
        value = card.extra.get(key)
        if value is None:
            continue
        try:
            reader(value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise NetworkImportError(f"{card_path}: {key}: {exc}") from None
        gates[key] = value
    return gates


def import_network(card_path: Path, out_dir: Path, network_path: Path | None = None) -> ImportedNetwork:
    """Check, wrap and write ``model.onnx`` + ``model.json`` into ``out_dir`` (nothing there until all passed)."""
    from collat_ensemble.contrast import DSC_CONVERSION

    from ..onnx_export import compare, openvino_available, run_openvino

    card, raw, card_digest = read_card(card_path)
    if "dsc" in card.modalities:
        from collat_ensemble.contrast import check_dsc_conversion

        try:
            check_dsc_conversion(str(card.extra.get("dsc_conversion", DSC_CONVERSION)))
        except ValueError as exc:
            raise NetworkImportError(f"{card_path}: dsc_conversion: {exc}") from None
    gates = _card_gates(card_path, card)
    source = network_path or (card_path.parent / card.network)
    model = load_network(source, card)
    try:
        sizes = check_graph(model, card)
        geo = geometry(card, sizes)
        wrapped = adapt(model, card, sizes, geo)
        onnx.checker.check_model(wrapped, full_check=True)
    except NetworkImportError as exc:
        raise NetworkImportError(f"{source}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the checker's own errors
        raise NetworkImportError(f"{source}: the card's layouts do not fit the graph's shapes, or the graph fails "
                                 f"the ONNX checker ({str(exc).splitlines()[0][-160:]})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "model.onnx.partial"
    onnx.save(wrapped, str(partial))
    try:
        inputs = smoke_inputs(card, geo)
        try:
            output = _run(partial, inputs)
        except Exception as exc:  # noqa: BLE001 - the runtime's own errors
            raise NetworkImportError(f"{source}: ONNX Runtime cannot run it on a phantom case "
                                     f"({str(exc).splitlines()[0][:200]})") from None
        check_outputs(source, card, output, inputs)
        parity = None
        if openvino_available():
            report = compare(output, run_openvino(partial, inputs), reference_name="onnxruntime",
                             candidate_name="openvino", tolerance=PARITY_TOLERANCE, inputs=inputs)
            if not report.passed:
                raise NetworkImportError(f"{source}: {report.line()}")
            parity = asdict(report)
        model_kind = MODEL_OF_ROLE[card.role]
        io = mrod_io(geo.channels, 5) if card.role == "collateral" else unet_io(geo.channels, geo.slices,
                                                                                 geo.height, geo.width)
        meta = {
            "model": model_kind, "preset": f"imported:{card.name or source.stem}", "imported": True,
            "triton_name": io.triton_name,
            "opset": next(o.version for o in wrapped.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": [asdict(t) for t in io.inputs], "outputs": [asdict(t) for t in io.outputs],
            "geometry": geo.as_dict(), "spatial_multiple": None,
            "sha256": sha256_bytes(partial.read_bytes()), "network_sha256": sha256_bytes(source.read_bytes()),
            "card": raw, "card_sha256": card_digest, "not_for_clinical_use": card.research_only,
            "modalities": list(card.modalities) or None,
            "dsc_conversion": str(card.extra.get("dsc_conversion", DSC_CONVERSION)) if "dsc" in card.modalities
            else None,
            **gates, "parity_openvino": parity,
            "accepted_precisions": [str(p) for p in card.extra.get("accepted_precisions") or ["fp32"]],
        }
        (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        partial.replace(out_dir / "model.onnx")
    finally:
        partial.unlink(missing_ok=True)
    return ImportedNetwork(card, io, geo, out_dir)

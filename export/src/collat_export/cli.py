"""``collat-export``: inspect the networks, export them to ONNX and TensorRT, write Triton model folders.

Failures a user can cause (bad checkpoint, bad shapes, no GPU) end with one line on
stderr and exit code 2; a failed numerical parity check exits 1. No tracebacks.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from collat_contract import names

from .presets import MODEL_KINDS, PRESET_NAMES

EXIT_PARITY = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's own error types into one line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from collat_ensemble.server.tensorrt_build import TensorRTUnavailable

        from .checkpoint import CheckpointError
        from .networks import InputShapeError
        from .onnx_export import ParityError

        try:
            return func(*args, **kwargs)
        except ParityError as exc:
            _fail(str(exc), EXIT_PARITY)
        except (CheckpointError, InputShapeError, TensorRTUnavailable, ValueError, OSError) as exc:
            _fail(str(exc))

    return wrapper


def _network(model: str, preset: str, checkpoint: Path | None, *, checkpoint_says: bool = False,
             mapped: tuple[Path | None, Path | None] = (None, None)):
    """``checkpoint_says``: a self-describing checkpoint's own preset wins over ``preset`` (which then only names
    the random weights' preset), so that a repository can pair a fine 3D-MROD-Net with a tiny U-Net. ``mapped``: a
    state dict from another code base and its name map, loaded on ``preset``'s architecture."""
    from .checkpoint import load_checkpoint
    from .networks import build_network
    from .presets import get_preset

    state_dict, name_map = mapped
    if (state_dict is None) != (name_map is None):
        raise ValueError("a state dict from another code base needs its name map, and a name map its state dict "
                         "(--state-dict with --name-map)")
    if state_dict is not None and name_map is not None:
        if checkpoint is not None:
            raise ValueError(f"{model}: give a checkpoint or a state dict with its name map, not both")
        from .importing.name_map import load_mapped

        loaded = load_mapped(state_dict, name_map, model, preset)
        return loaded.network, loaded.preset
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, model=model, preset=None if checkpoint_says else preset)
        return loaded.network, loaded.preset
    click.echo(f"note: no --checkpoint for {model}: exporting randomly initialised weights "
               "(plumbing only, not a trained model)", err=True)
    p = get_preset(model, preset)
    return build_network(p).eval(), p


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Export 3D-MROD-Net and the hypoperfusion U-Net for serving.

    \b
    Example:
      collat-export info
      collat-export onnx --model hypo --preset tiny --out build/hypo
      collat-export repository --target python-onnx --out build/repo

    The server that serves the repository is started by collat-server (package collat-ensemble).
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@clean_errors
def info(as_json: bool) -> None:
    """Parameter counts and FLOPs of every preset at its nominal input grid.

    \b
    Example:
      collat-export info --json
    """
    import torch

    from .flops import count_flops, parameter_count
    from .io_spec import example_inputs, network_io
    from .networks import build_network
    from .presets import PRESETS

    torch.set_grad_enabled(False)
    rows = []
    for (model, name), p in PRESETS.items():
        net = build_network(p).eval()
        inputs = example_inputs(p)
        tensors = [torch.from_numpy(inputs[t.name]) for t in network_io(p).inputs]
        rows.append({
            "model": model, "preset": name, "parameters": parameter_count(net),
            "gflops": round(count_flops(net, *tensors) / 1e9, 2),
            "input": {k: list(v.shape) for k, v in inputs.items()}, "notes": p.notes,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':6} {'preset':6} {'params':>12} {'GFLOP':>9}  input")
    for r in rows:
        shapes = " ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in r["input"].items())
        click.echo(f"{r['model']:6} {r['preset']:6} {r['parameters']:>12,} {r['gflops']:>9.2f}  {shapes}")


_model_opt = click.option("--model", type=click.Choice(MODEL_KINDS), required=True)
_preset_opt = click.option("--preset", type=click.Choice(PRESET_NAMES), default="tiny", show_default=True)


@main.command()
@_model_opt
@_preset_opt
@click.option("--checkpoint", type=click.Path(path_type=Path), help="state_dict or self-describing checkpoint.")
@click.option("--state-dict", type=click.Path(path_type=Path, dir_okay=False),
              help="A state dict trained in another code base on this architecture (with --name-map).")
@click.option("--name-map", type=click.Path(path_type=Path, dir_okay=False),
              help="How its tensor names become ours (docs/network-card.md).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for model.onnx + model.json.")
@clean_errors
def onnx(model: str, preset: str, checkpoint: Path | None, state_dict: Path | None, name_map: Path | None,
         out: Path) -> None:
    """Export to ONNX (opset 17, dynamic axes) and check parity with PyTorch (fp32, 1e-4).

    \b
    Example:
      collat-export onnx --model mrod --preset tiny --checkpoint weights/mrod_tiny.pt --out build/mrod
      collat-export onnx --model hypo --preset tiny --state-dict theirs.pt --name-map map.yaml --out build/hypo
    """
    from .onnx_export import export_onnx

    network, p = _network(model, preset, checkpoint, mapped=(state_dict, name_map))
    checkpoint = checkpoint or state_dict
    report = export_onnx(network, p, out, checkpoint=str(checkpoint) if checkpoint else None)
    click.echo(report.line())
    click.echo(f"wrote {out / 'model.onnx'} and {out / 'model.json'}")


@main.command()
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), required=True,
              help="model.onnx written by 'collat-export onnx' (its model.json must sit beside it).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for model.plan + model.plan.json.")
@click.option("--fp16", is_flag=True, help="FP16 engine (builder flag on TensorRT 10, FP16 ONNX on 11+).")
@click.option("--min", "min_shapes", multiple=True, help="NAME:1x60x1x32x32 (repeatable; defaults from model.json).")
@click.option("--opt", "opt_shapes", multiple=True, help="NAME:AxBx... optimal shape.")
@click.option("--max", "max_shapes", multiple=True, help="NAME:AxBx... largest shape.")
@click.option("--max-batch", type=int, default=None, help="Largest batch of the default profile.")
@click.option("--workspace", type=float, default=4.0, show_default=True, help="Builder workspace in GiB.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="Reused across builds.")
@clean_errors
def tensorrt(onnx_path: Path, out: Path, fp16: bool, min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...],
             max_shapes: tuple[str, ...], max_batch: int | None, workspace: float, timing_cache: Path | None) -> None:
    """Build a TensorRT engine for this GPU and check it against ONNX Runtime.

    \b
    Example:
      collat-export tensorrt --onnx build/hypo/model.onnx --out build/hypo --fp16
    """
    from collat_ensemble.server.tensorrt_build import TensorRTUnavailable, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailable(f"cannot build a TensorRT engine here: {reason}")
    _build_and_check_engine(onnx_path, out, fp16, min_shapes, opt_shapes, max_shapes, max_batch, workspace,
                            timing_cache)


def _build_and_check_engine(onnx_path: Path, out: Path, fp16: bool, min_shapes, opt_shapes, max_shapes,
                            max_batch: int | None, workspace: float, timing_cache: Path | None) -> None:
    from collat_contract.tensors import TensorSpec
    from collat_ensemble.server.repository import BATCHING
    from collat_ensemble.server.tensorrt_build import (
        FP16_ENGINE_TOLERANCE,
        FP32_ENGINE_TOLERANCE,
        ShapeProfile,
        build_engine,
        default_profile,
        parse_shapes,
        run_engine,
    )

    from .onnx_export import ParityError, compare, parity_inputs, run_onnxruntime
    from .presets import preset_from_dict

    meta_path = onnx_path.with_name("model.json")
    if not meta_path.exists():
        raise ValueError(f"{meta_path}: missing; export with 'collat-export onnx' first")
    meta = json.loads(meta_path.read_text())
    inputs = tuple(TensorSpec(t["name"], t["datatype"], tuple(t["dims"])) for t in meta["inputs"])
    batch = max_batch or BATCHING[meta["triton_name"]].max_batch_size
    profile = default_profile(inputs, meta["geometry"], batch, meta.get("spatial_multiple"))
    profile = ShapeProfile({**profile.min, **parse_shapes(min_shapes)}, {**profile.opt, **parse_shapes(opt_shapes)},
                           {**profile.max, **parse_shapes(max_shapes)})
    profile.validate(inputs)
    engine = out / "model.plan"
    report = build_engine(onnx_path, engine, profile, fp16=fp16, workspace_gb=workspace, timing_cache=timing_cache)
    click.echo(f"built {engine} for {report.gpu_name} (sm {report.compute_capability}), TensorRT "
               f"{report.tensorrt_version}, {report.precision} in {report.build_seconds} s")
    check = parity_inputs(preset_from_dict(meta))
    trt_out = run_engine(engine, check)[meta["outputs"][0]["name"]]
    parity = compare(run_onnxruntime(onnx_path, check), trt_out, reference_name="onnxruntime",
                     candidate_name="tensorrt", tolerance=FP16_ENGINE_TOLERANCE if fp16 else FP32_ENGINE_TOLERANCE,
                     inputs=check)
    report.parity = {"max_abs_diff": parity.max_abs_diff, "mean_abs_diff": parity.mean_abs_diff,
                     "tolerance": parity.tolerance, "passed": parity.passed}
    report.write(out / "model.plan.json")
    click.echo(parity.line())
    if not parity.passed:
        raise ParityError(parity.line())


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@clean_errors
def compact(checkpoint: Path, out: Path) -> None:
    """Re-save a checkpoint with FP16 tensors (half the size; how the demo weights ship).

    \b
    Example:
      collat-export compact --checkpoint build/train/mrod_tiny/checkpoint.pt --out weights/mrod_tiny.pt
    """
    from .checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint)
    save_checkpoint(out, loaded.network, loaded.preset, loaded.training, fp16=True)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.option("--checkpoint", "checkpoints", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, required=True, help="A checkpoint of the same network and preset (repeat, two or more).")
@click.option("--weight", "weights", type=float, multiple=True,
              help="Its weight (repeat in the same order; default equal; they must sum to 1).")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--note", default="", help="How the weights were chosen (goes into the model card).")
@clean_errors
def interpolate(checkpoints: tuple[Path, ...], weights: tuple[float, ...], out: Path, note: str) -> None:
    """Average the parameters of checkpoints of one network (FP16 out, as the demo weights ship).

    Weight-space interpolation between a network and its own fine-tune (WiSE-FT, Wortsman et al., CVPR 2022)
    keeps what the fine-tune gained and much of what it traded away; the shipped U-Net is such an average
    (its model card says which, with which weights, and how the weight was chosen).

    \b
    Example:
      collat-export interpolate --checkpoint a.pt --checkpoint b.pt --weight 0.5 --weight 0.5 --out c.pt
    """
    import torch

    from .checkpoint import load_checkpoint, save_checkpoint
    from .training.cards import write_model_card

    if len(checkpoints) < 2:
        raise click.UsageError("give two or more --checkpoint")
    weights = weights or tuple(1.0 / len(checkpoints) for _ in checkpoints)
    if len(weights) != len(checkpoints) or abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise click.UsageError("--weight: one per --checkpoint, none negative, summing to 1")
    loaded = [load_checkpoint(c) for c in checkpoints]
    first = loaded[0]
    if any((c.preset.model, c.preset.name) != (first.preset.model, first.preset.name) for c in loaded):
        raise click.UsageError("the checkpoints are not all of one network and preset")
    states = [c.network.state_dict() for c in loaded]
    averaged = {key: sum(w * s[key].float() for w, s in zip(weights, states, strict=True)).to(value.dtype)
                if value.is_floating_point() else value for key, value in states[0].items()}
    with torch.no_grad():
        first.network.load_state_dict(averaged)
    sources = []
    for path, weight, source in zip(checkpoints, weights, loaded, strict=True):
        card = path.with_name("model_card.json")
        command = json.loads(card.read_text()).get("command") if card.is_file() else None
        sources.append({"checkpoint": str(path), "weight": weight, "command": command, "training": source.training})
    training = {"interpolated_from": sources, "selection": note}
    save_checkpoint(out, first.network, first.preset, training, fp16=True)
    write_model_card(out.parent, model=first.preset.model, preset=first.preset.name,
                     command=shlex.join(["collat-export", *sys.argv[1:]]), training=training, evaluation={})
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and its model card (evaluate it with "
               "collat-train evaluate --update-card)")


@main.command()
@click.option("--target", type=click.Choice(["tensorrt", "openvino", "onnxruntime", "python-onnx"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@_preset_opt
@click.option("--mrod-checkpoint", type=click.Path(path_type=Path), default=None)
@click.option("--hypo-checkpoint", type=click.Path(path_type=Path), default=None)
@click.option("--mrod-card", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Serve a 3D-MROD-Net trained elsewhere, described by this network card (docs/network-card.md).")
@click.option("--mrod-network", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Its ONNX or TorchScript file, when not the card's own 'network'.")
@click.option("--hypo-card", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Serve a hypoperfusion U-Net trained elsewhere, described by this network card.")
@click.option("--hypo-network", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Its ONNX or TorchScript file, when not the card's own 'network'.")
@click.option("--mrod-state-dict", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A 3D-MROD-Net state dict from another code base, on --preset's architecture (with its name map).")
@click.option("--mrod-name-map", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--hypo-state-dict", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A U-Net state dict from another code base, on --preset's architecture (with its name map).")
@click.option("--hypo-name-map", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--config-only", is_flag=True, help="Write config.pbtxt files only (the committed production layout).")
@click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True)
@click.option("--cpu-threads", type=int, default=2, show_default=True, help="ONNX Runtime threads per instance.")
@click.option("--max-queue-size", type=int, default=None,
              help="Requests a network may queue before new ones are refused (default: 16).")
@click.option("--unet-stride", type=int, default=None,
              help="Slices between the U-Net's 16-slice windows (default: 4 for tiny, 8 for full; see "
                   "collat-train stride-study).")
@clean_errors
def repository(target: str, out: Path, preset: str, mrod_checkpoint: Path | None, hypo_checkpoint: Path | None,
               mrod_card: Path | None, mrod_network: Path | None, hypo_card: Path | None, hypo_network: Path | None,
               mrod_state_dict: Path | None, mrod_name_map: Path | None, hypo_state_dict: Path | None,
               hypo_name_map: Path | None, config_only: bool, dynamic_batching: bool, cpu_threads: int,
               max_queue_size: int | None, unet_stride: int | None) -> None:
    """Write the whole Triton model repository (networks, Python steps, ensembles) for a deployment target.

    A role given a network card serves that network (imported and checked first: nothing is written when it fails);
    a role without one serves its checkpoint, or the demo weights when the other role has a card (else the
    preset's random weights, for plumbing).

    \b
    Example:
      collat-export repository --target python-onnx --out build/repo \\
          --mrod-checkpoint weights/mrod_tiny.pt --hypo-checkpoint weights/hypo_tiny.pt
      collat-export repository --target python-onnx --out build/repo --hypo-card my_unet.yaml
    """
    from collat_ensemble.server.pipelines import write_pipeline_models
    from collat_ensemble.server.repository import write_model_dir
    from collat_ensemble.serving.perfusion import NetworkGrid
    from collat_ensemble.template import build_template

    from .importing import import_network
    from .io_spec import network_io, perfusion_grid
    from .onnx_export import export_onnx
    from .presets import get_preset

    cards = {"mrod": (mrod_card, mrod_network), "hypo": (hypo_card, hypo_network)}
    weights = {"mrod": (mrod_checkpoint, mrod_state_dict), "hypo": (hypo_checkpoint, hypo_state_dict)}
    for model, (card, network) in cards.items():
        if network is not None and card is None:
            raise ValueError(f"--{model}-network needs --{model}-card: the card says how to feed and read it")
        if card is not None and any(w is not None for w in weights[model]):
            raise ValueError(f"--{model}-card and --{model}-checkpoint/--{model}-state-dict: give one network per role")
    if config_only and (mrod_card or hypo_card):
        raise ValueError("--config-only writes the configs of the built-in networks: it takes no network card")
    if mrod_card or hypo_card:  # the other role serves the demo weights, not random ones
        from .weights import demo_checkpoint

        mrod_checkpoint = mrod_checkpoint or (None if mrod_card or mrod_state_dict else demo_checkpoint("mrod"))
        hypo_checkpoint = hypo_checkpoint or (None if hypo_card or hypo_state_dict else demo_checkpoint("hypo"))
    ios, grid = {}, None
    with tempfile.TemporaryDirectory() as staging:
        imported = {model: import_network(card, Path(staging) / model, network)
                    for model, (card, network) in cards.items() if card is not None and not config_only}
        for model, checkpoint in (("mrod", mrod_checkpoint), ("hypo", hypo_checkpoint)):
            if model in imported:
                found = imported[model]
                ios[model] = found.io
                click.echo(f"{model}: imported {found.card.name or found.card.network} ({found.card.role}, "
                           f"{found.card.inputs[next(iter(found.card.inputs))].layout})")
                path = write_model_dir(out, found.io, target, onnx_dir=found.folder, dynamic_batching=dynamic_batching,
                                       cpu_threads=cpu_threads, max_queue_size=max_queue_size)
                if model == "mrod":
                    g = found.geometry
                    grid = NetworkGrid(g.channels, float(g.frame_seconds or 0), g.slices, g.height, g.width)
                click.echo(f"wrote {path}")
                continue
            if config_only:
                served = get_preset(model, preset)
                ios[model] = network_io(served)
                write_model_dir(out, ios[model], target, dynamic_batching=dynamic_batching, cpu_threads=cpu_threads,
                                max_queue_size=max_queue_size)
                click.echo(f"wrote {out / ios[model].triton_name / 'config.pbtxt'}")
            else:
                mapped = (mrod_state_dict, mrod_name_map) if model == "mrod" else (hypo_state_dict, hypo_name_map)
                network, served = _network(model, preset, checkpoint, checkpoint_says=True, mapped=mapped)
                checkpoint = checkpoint or mapped[0]
                ios[model] = network_io(served)
                with tempfile.TemporaryDirectory() as tmp:
                    report = export_onnx(network, served, tmp, checkpoint=str(checkpoint) if checkpoint else None)
                    click.echo(f"{model}: {report.line()}")
                    path = write_model_dir(out, ios[model], target, onnx_dir=Path(tmp),
                                           dynamic_batching=dynamic_batching, cpu_threads=cpu_threads,
                                           max_queue_size=max_queue_size)
                click.echo(f"wrote {path}")
            if model == "mrod":
                grid = perfusion_grid(served)
    template = None if config_only else build_template()
    # The full U-Net's windows are spaced by 8 to serve a patient within the time target on 2 cores, at almost no
    # cost in Dice and none in decisions (collat-train stride-study; docs/benchmarks.md); the tiny demo keeps 4.
    stride = unet_stride if unet_stride is not None else 8 if preset == "full" else 4
    for folder in write_pipeline_models(out, ios["mrod"], ios["hypo"], grid, template, unet_stride=stride):
        click.echo(f"wrote {folder}")
    if not config_only:
        from collat_ensemble.server.warmup import write_warmup_case

        click.echo(f"wrote {write_warmup_case(out)} (the start-up self-test's case)")


_ROLE_NETWORK = {"mrod": names.MROD_NET, "hypo": names.HYPOPERFUSION_UNET}


@main.command("add-version")
@click.option("--repository", "repository_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A model repository built by collat-export repository.")
@click.option("--mrod-card", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--mrod-network", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--hypo-card", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--hypo-network", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--policy", default="all", show_default=True,
              help="Which versions the server loads: latest, all, or specific:1,2 (the pipelines serve the newest "
                   "loaded one).")
@clean_errors
def add_version(repository_dir: Path, mrod_card: Path | None, mrod_network: Path | None, hypo_card: Path | None,
                hypo_network: Path | None, policy: str) -> None:
    """Add an imported network as the next version of mrod_net or hypoperfusion_unet, beside the earlier ones.

    \b
    Example:
      collat-export add-version --repository build/model_repository --hypo-card my_unet.yaml --policy all
    """
    from collat_ensemble.server.model_versions import parse_policy

    from .importing import import_network
    from .importing.versions import add_version as add

    parse_policy(policy)
    given = [(model, card, network) for model, card, network in (("mrod", mrod_card, mrod_network),
                                                                  ("hypo", hypo_card, hypo_network)) if card]
    if len(given) != 1 or (mrod_network and not mrod_card) or (hypo_network and not hypo_card):
        raise ValueError("give one network card: --mrod-card or --hypo-card (with its --*-network, if any)")
    _, card_path, network = given[0]
    with tempfile.TemporaryDirectory() as staging:
        imported = import_network(card_path, Path(staging), network)
        version = add(repository_dir, imported, policy)
    click.echo(f"wrote {repository_dir / imported.io.triton_name / str(version)} "
               f"({imported.card.name or card_path.name}, policy {policy}); restart the server to load it")


@main.command("version-policy")
@click.option("--repository", "repository_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--model", type=click.Choice(sorted(_ROLE_NETWORK)), required=True)
@click.option("--policy", required=True, help="latest, all, or specific:1,2")
@clean_errors
def version_policy(repository_dir: Path, model: str, policy: str) -> None:
    """Choose which versions of a network the server loads; rolling back is pinning an earlier one.

    \b
    Example:
      collat-export version-policy --repository build/model_repository --model hypo --policy specific:1
    """
    from .importing.versions import set_policy

    served = set_policy(repository_dir, _ROLE_NETWORK[model], policy)
    click.echo(f"{_ROLE_NETWORK[model]}: policy {policy}; the pipelines serve version {served} after a restart")


@main.command()
@click.option("--network", "network_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The trained network: ONNX.")
@click.option("--role", type=click.Choice(["collateral", "hypoperfusion"]), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The card to write (YAML).")
@click.option("--force", is_flag=True, help="Overwrite an existing card.")
@clean_errors
def card(network_path: Path, role: str, out: Path, force: bool) -> None:
    """Draft a network card from an ONNX graph (names, ranks, fixed sizes, a guessed layout) for you to finish.

    \b
    Example:
      collat-export card --network my_unet.onnx --role hypoperfusion --out my_unet.yaml
    """
    from .importing.draft import draft_card

    if out.exists() and not force:
        raise ValueError(f"{out}: exists (use --force)")
    out.write_text(draft_card(network_path, role, out.parent))
    click.echo(f"wrote {out}: check every line marked CHECK, then: collat-export repository ... "
               f"--{'mrod' if role == 'collateral' else 'hypo'}-card {out}")

if __name__ == "__main__":  # pragma: no cover
    main()

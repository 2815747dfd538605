"""``collat-train``: train either network on phantom cases, and evaluate a checkpoint on held-out seeds."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from collat_ensemble.phantom import KINDS

from ..presets import PRESET_NAMES

if TYPE_CHECKING:  # torch comes in with it: imported where a command needs it, so --help stays quick
    from .evaluate import EvaluationReport


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _echo(message: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train 3D-MROD-Net or the hypoperfusion U-Net on the digital phantom.

    \b
    Example:
      collat-train mrod --preset tiny --cases 160 --epochs 40 --out weights/mrod_tiny
      collat-train evaluate --model mrod --checkpoint weights/mrod_tiny/checkpoint.pt --seeds 0-19
    """


@dataclass
class _DatasetPart:
    """A labelled dataset's share of a training run: its samples by split and what the card says about it."""

    train: list
    validation: list
    test_subjects: list
    record: dict


def _read_split(data: Path, layout_name: str, split_seed: int):
    """(dataset, its subject split): cheap, so a run's fingerprint is known before anything is prepared."""
    from ..datasets import DatasetError, read_dataset
    from ..datasets.training import split_subjects

    try:
        dataset = read_dataset(data, _layout(layout_name))
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    split = split_subjects([s.id for s in dataset.subjects], seed=split_seed)
    _echo(f"{dataset.root}: {dataset.layout} layout, {len(dataset.subjects)} subjects: {len(split['train'])} train, "
          f"{len(split['validation'])} validation, {len(split['test'])} test (split seed {split_seed})")
    return dataset, split


def _dataset_part(model: str, preset, dataset, split: dict[str, list[str]], split_seed: int) -> _DatasetPart:
    from ..datasets.training import build_subject_samples, dataset_record, read_subjects

    data = dataset.root
    parts, unusable = {}, []
    for name in ("train", "validation"):
        _echo(f"preparing the {name} subjects as the server does")
        samples, left_out = build_subject_samples(model, read_subjects(dataset, split[name]), preset, _echo)
        parts[name] = [s for _, s in samples]
        unusable += left_out
    if not parts["train"]:
        raise click.UsageError(f"{data}: no training subject has what the {model} network needs "
                               f"({'; '.join(sorted({x['reason'] for x in unusable}))})")
    return _DatasetPart(parts["train"], parts["validation"], read_subjects(dataset, split["test"]),
                        dataset_record(dataset, split, unusable, split_seed))


def _resume_state(path: Path, fingerprint: dict, resume: bool) -> dict | None:
    """The snapshot to go on from (``--resume``), refused when it belongs to another run."""
    import torch

    if not resume:
        return None
    if not path.is_file():
        _echo(f"--resume: no {path}, starting from the first epoch")
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        raise click.UsageError(f"{path}: a snapshot of another run (other data, preset or settings); remove it or "
                               "leave out --resume")
    return state


def _train(model: str, preset_name: str, cases: int, epochs: int, out: Path, batch: int, lr: float, workers: int,
           eval_seeds: str, init: Path | None, space: str = "mni", modality: str = "dce", motion: str = "none",
           pose: str = "template", sample_cache: Path | None = None, kinds: str = "mca", data: Path | None = None,
           layout_name: str = "auto", phantom_fraction: float = 0.25, split_seed: int = 0, resume: bool = False,
           **extra) -> None:
    from collat_ensemble.contrast import DSC_CONVERSION
    from collat_ensemble.phantom.case import PHANTOM_VERSION
    from collat_ensemble.quality import TrainingDomain

    from ..checkpoint import save_checkpoint
    from ..presets import get_preset
    from .cards import write_model_card
    from .data import build_samples, parse_seed_range, training_seeds
    from .domain import domain_document
    from .evaluate import evaluate_hypo, evaluate_mrod
    from .loop import TrainConfig, train_hypo, train_mrod

    preset = get_preset(model, preset_name)
    part, read = None, None
    cfg = TrainConfig(epochs=epochs, batch=batch, lr=lr, **extra)
    fingerprint: dict = {"model": model, "preset": preset_name, "config": cfg.as_dict(),
                         "init": str(init) if init else None}
    if data is not None:
        if not 0 <= phantom_fraction < 1:
            raise click.UsageError("--phantom-fraction must be in [0, 1)")
        read = _read_split(data, layout_name, split_seed)
        fingerprint.update(dataset=[read[0].file_digest, read[1]], phantom_fraction=phantom_fraction)
    elif cases < 2:
        raise click.UsageError("--cases must be at least 2 (one is held out for validation)")
    else:
        fingerprint.update(cases=cases, space=space, kinds=kinds, modality=modality, motion=motion, pose=pose)
    snapshot_path = out / "resume.pt"
    resume_from = _resume_state(snapshot_path, fingerprint, resume)
    if read is not None:
        part = _dataset_part(model, preset, *read, split_seed)
        cases = round(len(part.train) * phantom_fraction / (1 - phantom_fraction))
    seeds = training_seeds(cases) if cases else []
    seed_range = [seeds[0], seeds[-1]] if seeds else []
    held = parse_seed_range(eval_seeds)
    samples = []
    if cases:
        _echo(f"generating {cases} phantom cases (seeds {seeds[0]}-{seeds[-1]}) with {workers} workers")
    for i, s in enumerate(build_samples(model, preset, seeds, workers, space, modality, motion, pose,
                                        cache=sample_cache, kinds=kinds) if cases else ()):
        samples.append(s)
        if (i + 1) % 10 == 0 or i + 1 == cases:
            _echo(f"  {i + 1}/{cases} cases")
    if part is None:
        n_val = max(1, cases // 10)
        train, val = samples[:-n_val], samples[-n_val:]
    else:  # the dataset's own validation subjects judge the epochs; phantoms only add to training
        n_val = len(part.validation)
        train, val = part.train + samples, part.validation
        part.record.update(phantom_cases=cases, phantom_fraction=phantom_fraction)
        _echo(f"training on {len(part.train)} subjects and {cases} phantom cases, validating on {n_val} subjects")
    init_state = None
    if init is not None:
        from ..checkpoint import load_checkpoint

        source = load_checkpoint(init, model=model)
        init_state = source.network.state_dict()
        _echo(f"fine-tuning from {init}" + ("" if source.preset.name == preset_name else
                                           f" ({source.preset.name} preset: its layers, the {preset_name} head new)"))
    out.mkdir(parents=True, exist_ok=True)

    def snapshot(state: dict) -> None:  # every epoch: --resume goes on from the last one finished
        import torch

        tmp = snapshot_path.with_name(".resume.pt.partial")
        torch.save({**state, "fingerprint": fingerprint}, tmp)
        tmp.replace(snapshot_path)

    if model == "mrod":
        def keep_best(network, epoch: int) -> None:  # a stopped run keeps its best weights so far
            save_checkpoint(out / "checkpoint.pt", network, preset, {"cases": cases, "seeds": seed_range,
                                                                     "partial": f"best of the first {epoch} epochs"})

        result = train_mrod(preset, train, val, cfg, progress=_echo, init_state=init_state, on_best=keep_best,
                            resume=resume_from, on_epoch=snapshot)
    else:
        result = train_hypo(preset, train, val, cfg, progress=_echo, init_state=init_state, resume=resume_from,
                            on_epoch=snapshot)
    training = {"initialized_from": str(init) if init else None,
                **({"modalities": ["dce", "dsc"] if modality == "mixed" else [modality], "motion": motion,
                    "pose": pose} if model == "mrod" else {}),
                **({"dsc_conversion": DSC_CONVERSION} if model == "mrod" and modality != "dce" else {}),
                **({"space": space, "kinds": kinds} if model == "hypo" else {}),
                **({"dataset": part.record} if part is not None else {}),
                "cases": cases, "seeds": seed_range, "phantom_version": PHANTOM_VERSION,
                "validation_cases": n_val, "config": cfg.as_dict(), "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "seconds": round(result.seconds, 1), "history": result.history, "git_commit": _git_commit()}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoint.pt", result.network, preset, training)
    _echo(f"evaluating on held-out seeds {held[0]}-{held[-1]}")
    # The U-Net's training domain, from the cases it was just trained on (the server's plausibility gate reads it).
    domain = None
    if model == "hypo":
        described = None if part is None else (f"{len(part.train)} subjects of {part.record['name']} and "
                                               f"{cases} phantom cases (phantom version {PHANTOM_VERSION})")
        trained_on = samples if part is None else part.train + samples
        domain = domain_document(seeds, [(x.core_ml, x.lesion_ml) for x in trained_on], kinds, cases=described)
    report = evaluate_mrod(result.network, preset, held, _echo, modality) if model == "mrod" else \
        evaluate_hypo(result.network, held, _echo, space="native" if space != "mni" else "mni", kinds=kinds,
                      domain=None if domain is None else TrainingDomain.from_dict(domain))
    extras: dict = {} if domain is None else {"training_domain": domain}
    if part is not None:
        from ..datasets.training import evaluate_hypo_subjects, evaluate_mrod_subjects

        _echo(f"evaluating on the {len(part.test_subjects)} test subjects")
        figures = evaluate_hypo_subjects(result.network, part.test_subjects) if model == "hypo" else \
            evaluate_mrod_subjects(result.network, part.test_subjects, preset)
        extras["evaluation_dataset"] = figures
    command = "collat-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    evaluated = report.as_dict()
    write_model_card(out, model=model, preset=preset_name, command=command, training=training,
                     evaluation={} if report.space == "native" else evaluated,
                     evaluation_native=evaluated if report.space == "native" else None, extra=extras or None)
    if part is not None:
        from ..importing.card_writer import write_network_card

        card = write_network_card(out / "checkpoint.pt", out, name=f"{model}-{part.record['name']}", card_extra={
            "model_card": "model_card.json", **({"training_domain": domain} if domain else {}),
            "training_dataset": {k: part.record[k] for k in ("name", "version", "subjects", "file_digest")}})
        _echo(f"network card {card}: collat-export repository --{model}-card {card}")
    snapshot_path.unlink(missing_ok=True)  # finished: nothing to resume
    click.echo(json.dumps({"checkpoint": str(out / "checkpoint.pt"), **report.summary,
                           **({"dataset_test": {k: v for k, v in extras["evaluation_dataset"].items() if k != "rows"}}
                              if part is not None else {})}, indent=2))


LAYOUT_NAMES = ("auto", "soop", "isles22", "bids", "dicom")
_common = [
    click.option("--preset", "preset_name", type=click.Choice(PRESET_NAMES), default="tiny", show_default=True),
    click.option("--cases", type=int, default=120, show_default=True, help="Training phantom cases (10% validate)."),
    click.option("--epochs", type=int, default=30, show_default=True),
    click.option("--out", type=click.Path(path_type=Path), required=True),
    click.option("--workers", type=int, default=2, show_default=True, help="Processes generating cases."),
    click.option("--eval-seeds", default="0-4", show_default=True, help="Held-out seeds for the model card."),
    click.option("--threads", type=int, default=2, show_default=True),
    click.option("--seed", type=int, default=0, show_default=True, help="Initialisation and shuffling."),
    click.option("--init", type=click.Path(path_type=Path), default=None,
                 help="Start from this checkpoint (fine-tuning) instead of random weights; a tiny 3D-MROD-Net "
                      "checkpoint starts a fine one's coarse path."),
    click.option("--sample-cache", type=click.Path(path_type=Path), default=None,
                 help="Keep each generated training sample in this folder and reuse it on the next run."),
    click.option("--data", type=click.Path(path_type=Path), default=None,
                 help="Fine-tune on a labelled dataset (BIDS: SOOP, ISLES'22, plain): split by subject, its "
                      "validation subjects judge the epochs, its test subjects are scored in the card; --cases is "
                      "then set by --phantom-fraction. Writes a network card beside the checkpoint."),
    click.option("--layout", "layout_name", type=click.Choice(LAYOUT_NAMES), default="auto", show_default=True,
                 help="--data: the dataset's layout."),
    click.option("--phantom-fraction", type=float, default=0.25, show_default=True,
                 help="--data: the share of phantom cases among the training samples."),
    click.option("--split-seed", type=int, default=0, show_default=True,
                 help="--data: the subject split's seed (80 % train, 10 % validation, 10 % test)."),
    click.option("--resume", is_flag=True, help="Go on from the last finished epoch of an interrupted run in --out."),
]


def _with_common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


@main.command()
@_with_common
@click.option("--batch", type=int, default=2, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=10, show_default=True, help="Epochs before the lr is halved.")
@click.option("--modality", type=click.Choice(["dce", "dsc", "mixed"]), default="dce", show_default=True,
              help="Phantom series: DCE, DSC (served after its Delta R2* conversion), or every other one DSC.")
@click.option("--motion", type=click.Choice(["none", "mixed"]), default="none", show_default=True,
              help="mixed: half the series move between frames.")
@click.option("--pose", type=click.Choice(["template", "mixed"]), default="template", show_default=True,
              help="mixed: two series in three with the head turned in-plane (up to 15 degrees), maps alike.")
@click.option("--crop", type=int, default=64, show_default=True,
              help="fine preset: the in-plane crop its full-resolution head trains on.")
def mrod(preset_name, cases, epochs, out, workers, eval_seeds, threads, seed, init, sample_cache, data, layout_name,
         phantom_fraction, split_seed, resume, batch, lr, patience, modality, motion, pose, crop) -> None:
    """Train 3D-MROD-Net (0.75 masked L2 + 0.25 ordinal CE on SID bins), on phantoms or a labelled dataset."""
    _train("mrod", preset_name, cases, epochs, out, batch, lr, workers, eval_seeds, init, modality=modality,
           motion=motion, pose=pose, sample_cache=sample_cache, data=data, layout_name=layout_name,
           phantom_fraction=phantom_fraction, split_seed=split_seed, resume=resume, threads=threads, seed=seed,
           patience=patience, crop=crop)


@main.command()
@_with_common
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--slabs-per-case", type=int, default=4, show_default=True)
@click.option("--crop", type=int, default=64, show_default=True, help="In-plane training crop (0 = whole slab).")
@click.option("--space", type=click.Choice(["mni", "native", "mixed"]), default="mni", show_default=True,
              help="Phantom DWIs in MNI space, in a native pose (registered as served), or every other one native.")
@click.option("--kinds", type=click.Choice(["mixed", *KINDS]), default="mixed", show_default=True,
              help="Phantom version 4's mix of what hospitals scan (MCA, lacunar, posterior strokes, emboli, chronic "
                   "infarcts, mimics), or one kind.")
def hypo(preset_name, cases, epochs, out, workers, eval_seeds, threads, seed, init, sample_cache, data, layout_name,
         phantom_fraction, split_seed, resume, batch, lr, slabs_per_case, crop, space, kinds) -> None:
    """Train the hypoperfusion U-Net (BCE + Dice + volume error), on phantoms or a labelled dataset."""
    _train("hypo", preset_name, cases, epochs, out, batch, lr, workers, eval_seeds, init, space=space,
           sample_cache=sample_cache, kinds=kinds, data=data, layout_name=layout_name,
           phantom_fraction=phantom_fraction, split_seed=split_seed, resume=resume, threads=threads, seed=seed,
           slabs_per_case=slabs_per_case, crop=crop)


# Kept beside the main evaluation when a card is rewritten.
_CARD_EXTRAS = ("evaluation_dsc", "evaluation_cps", "evaluation_kinds", "lesion_calibration", "training_domain",
                "evaluation_dataset", "precision", "cps_rule", "int8")


def _rewrite_card_document(checkpoint: Path, card: dict) -> None:
    """Both card files from a changed card document (what it records of training and evaluation kept)."""
    from .cards import write_model_card

    write_model_card(checkpoint.parent, model=card["model"], preset=card["preset"],
                     command=card.get("command", "unknown"), training=card.get("training", {}),
                     evaluation=card.get("evaluation", {}), evaluation_native=card.get("evaluation_native"),
                     extra={k: card[k] for k in _CARD_EXTRAS if k in card})


def _record_in_card(checkpoint: Path, key: str, value: Any) -> Path:
    """``value`` under ``key`` in the model card beside ``checkpoint`` (both files rewritten); one clear error and exit
    code 2 without a readable card."""
    card_path = checkpoint.with_name("model_card.json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        click.echo(f"error: {card_path}: no model card to record {key} in ({exc})", err=True)
        sys.exit(2)
    card[key] = value
    _rewrite_card_document(checkpoint, card)
    return card_path


def _rewrite_card(checkpoint: Path, preset_name: str, training: dict, evaluation: dict) -> None:
    """A re-evaluation (new metric, more seeds, another modality) updates the card; how the weights were trained
    does not change. A DSC, CPS or by-kind evaluation is kept beside the DCE (MCA) one."""
    previous = checkpoint.parent / "model_card.json"
    card = json.loads(previous.read_text()) if previous.is_file() else {}
    card = {**card, "model": card.get("model", evaluation["model"]), "preset": preset_name,
            "command": card.get("command", "unknown"), "training": card.get("training", training)}
    if evaluation.get("model") == "cps":
        card["evaluation_cps"] = evaluation
    elif evaluation.get("modality") == "dsc":
        card["evaluation_dsc"] = evaluation
    elif evaluation.get("kinds", "mca") != "mca":  # phantom version 4's mix, beside the MCA strokes' figures
        card["evaluation_kinds"] = evaluation
    elif evaluation.get("space") == "native":
        card["evaluation_native"] = evaluation
    else:
        card["evaluation"] = evaluation
    _rewrite_card_document(checkpoint, card)
    _echo(f"model card rewritten in {checkpoint.parent}")


@main.command()
@click.option("--model", type=click.Choice(["mrod", "hypo", "cps"]),
              help="cps: the collateral grade from 3D-MROD-Net's maps (and the conventional map's) vs the phantom's.")
@click.option("--checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help="A labelled dataset (BIDS: SOOP, ISLES'22, plain; or DICOM study folders) to send through the "
                   "running server instead of phantoms; needs --out.")
@click.option("--out", type=click.Path(path_type=Path), help="--data: the report folder (a rerun resumes in it).")
@click.option("--url", default="127.0.0.1:8000", show_default=True, help="--data: the server's address.")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True)
@click.option("--layout", "layout_name", type=click.Choice(LAYOUT_NAMES), default="auto", show_default=True,
              help="--data: the dataset's layout.")
@click.option("--allow-b-value", is_flag=True,
              help="--data: run DWIs outside b=800-1200 too (their decisions are withheld), as collat-client infer.")
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="--data: subjects in flight at once (the server batches them).")
@click.option("--seeds", default="0-19", show_default=True, help="FIRST-LAST held-out phantom seeds (< 1,000,000).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--space", type=click.Choice(["mni", "native"]), default="mni", show_default=True,
              help="hypo: phantoms with the DWI/ADC in MNI space, or native scans in a random pose (registered).")
@click.option("--modality", type=click.Choice(["dce", "dsc", "mixed"]), default="dce", show_default=True,
              help="mrod: the phantom series' kind (mixed: odd seeds DSC).")
@click.option("--kinds", type=click.Choice(["mixed", *KINDS]), default="mca", show_default=True,
              help="hypo: the kinds of case (mixed: phantom version 4's mix; figures per kind in by_kind).")
@click.option("--workers", type=int, default=1, show_default=True, help="cps and hypo: processes.")
@click.option("--update-card", is_flag=True,
              help="Rewrite model_card.md/.json next to the checkpoint with this evaluation (training record kept).")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False),
              help="cps: write the network's confusion matrix (rows: the phantom's grade) as this PNG.")
@click.option("--ceiling", is_flag=True,
              help="hypo, no checkpoint: a perfect U-Net (the truth as registered onto its grid) through the served "
                   "path, so the figures are what registration and resampling alone cost.")
def evaluate(model: str | None, checkpoint: Path | None, data: Path | None, out: Path | None, url: str,
             protocol: str, layout_name: str, allow_b_value: bool, concurrency: int, seeds: str, as_json: bool,
             space: str, modality: str, kinds: str, workers: int, update_card: bool, plot: Path | None,
             ceiling: bool) -> None:
    """Generate held-out phantom cases, run the checkpoint, print the studies' metrics; or, with --data, send a
    labelled dataset through the running server and write a report folder (CSV, Markdown, HTML, plots).

    \b
    Example:
      collat-train evaluate --model hypo --checkpoint weights/hypo_tiny/checkpoint.pt --seeds 0-19
      collat-train evaluate --model cps --checkpoint weights/mrod_tiny/checkpoint.pt --seeds 0-199 --workers 2
      collat-train evaluate --model hypo --ceiling --space native --seeds 0-199 --workers 2
      collat-train evaluate --data /data/ds004889 --out report/ --url 127.0.0.1:8000
    """
    if data is not None:
        _evaluate_dataset(data, out, url, protocol, layout_name, allow_b_value, concurrency, as_json)
        return
    if ceiling:
        if model != "hypo" or checkpoint is not None or update_card:
            click.echo("error: --ceiling scores a perfect U-Net: give --model hypo, and no --checkpoint or "
                       "--update-card", err=True)
            sys.exit(2)
        _print_report(_ceiling_report(seeds, space, kinds, workers, as_json), as_json, ceiling=True)
        return
    if model is None or checkpoint is None:
        click.echo("error: give --model and --checkpoint (phantom evaluation) or --data and --out (a dataset)",
                   err=True)
        sys.exit(2)
    from collat_ensemble.contrast import trained_dsc_conversion

    from ..checkpoint import CheckpointError, load_checkpoint
    from .data import parse_seed_range
    from .evaluate import evaluate_hypo, evaluate_mrod

    if model == "cps":
        _evaluate_cps(checkpoint, seeds, as_json, workers, update_card, plot)
        return
    try:
        seed_list = parse_seed_range(seeds)
        loaded = load_checkpoint(checkpoint, model=model)
        report = evaluate_mrod(loaded.network, loaded.preset, seed_list, None if as_json else _echo, modality,
                               trained_dsc_conversion(loaded.training)) \
            if model == "mrod" else evaluate_hypo(loaded.network, seed_list, None if as_json else _echo, space=space,
                                                  calibration=card_calibration(checkpoint), workers=workers,
                                                  kinds=kinds, domain=card_domain(checkpoint))
    except (CheckpointError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if update_card:
        _rewrite_card(checkpoint, loaded.preset.name, loaded.training, report.as_dict())
    _print_report(report, as_json)


def _ceiling_report(seeds: str, space: str, kinds: str, workers: int, as_json: bool) -> EvaluationReport:
    from .data import parse_seed_range
    from .evaluate import evaluate_hypo

    try:
        return evaluate_hypo(None, parse_seed_range(seeds), None if as_json else _echo, space=space,
                             workers=workers, kinds=kinds)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _print_report(report: EvaluationReport, as_json: bool, ceiling: bool = False) -> None:
    if as_json:
        click.echo(json.dumps({**report.as_dict(), **({"ceiling": True} if ceiling else {})}, indent=2))
        return
    what, seed_list = "a perfect U-Net (the served path's ceiling)" if ceiling else report.model, report.seeds
    click.echo(f"{what} on {len(seed_list)} held-out phantom cases (seeds {seed_list[0]}-{seed_list[-1]}):")
    for k, v in report.summary.items():
        click.echo(f"  {k:26} {v:8.4f}")
    for band, figures in report.by_size.items():
        click.echo(f"  {band:10} {figures['cases']:4d} cases  volume error {figures['mean_volume_error_ml']:+7.1f} mL "
                   f"(network {figures['network_mean_volume_error_ml']:+7.1f})  DEFUSE 3 accuracy "
                   f"{figures['defuse3_accuracy']:.3f} (network {figures['network_defuse3_accuracy']:.3f})")
    for kind, figures in report.by_kind.items():
        click.echo(f"  {kind:10} {figures['cases']:4d} cases  median Dice {figures['median_dice']:.3f}  volume error "
                   f"{figures['mean_volume_error_ml']:+7.1f} mL  under 10 mL {figures['under_10ml_fraction']:.0%}  "
                   f"withheld {figures['withheld_fraction']:.0%}  DEFUSE 3 false yes {figures['defuse3_false_yes']} "
                   f"(served {figures['served_defuse3_false_yes']})")
    for k, ok in report.passed().items():
        bar = f"<= {report.targets[k]:g}" if k.endswith("_false_yes") else f">= {report.targets[k]:g}"
        click.echo(f"  target {k} {bar} (measured {report.figure(k):.3g}): {'met' if ok else 'NOT met'}")


def _layout(name: str):
    from ..datasets import DICOM_STUDIES, GENERIC_BIDS, ISLES22, SOOP

    return {"soop": SOOP, "isles22": ISLES22, "bids": GENERIC_BIDS, "dicom": DICOM_STUDIES}.get(name)


def _evaluate_dataset(data: Path, out: Path | None, url: str, protocol: str, layout_name: str,
                      allow_b_value: bool, concurrency: int, as_json: bool) -> None:
    from ..datasets import DatasetError
    from ..datasets.evaluate import evaluate_dataset
    from ..datasets.served import ServerGone

    if out is None:
        click.echo(f"error: {data}: --data needs --out, the report folder", err=True)
        sys.exit(2)
    try:
        summary, files = evaluate_dataset(data, out, url, layout=_layout(layout_name), protocol=protocol,
                                          allow_b_value=allow_b_value, concurrency=concurrency, progress=_echo)
    except DatasetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ServerGone as exc:
        click.echo(f"error: {exc}; finished subjects are kept in {out}, run the same command to resume",
                   err=True)
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    s = summary
    click.echo(f"{s['subjects']} subjects: {s['done']} analysed, {len(s['failed'])} failed, {len(s['skipped'])} "
               f"skipped, lesion withheld in {s['lesion_withheld']}")
    for key, label in (("core_dice", "core Dice"), ("lesion_dice", "lesion Dice")):
        if s[key]["scored"]:
            click.echo(f"  {label:12} median {s[key]['median']:.3f} over {s[key]['scored']}")
    for key in ("defuse3", "dawn"):
        d = s[key]
        if d["cases"]:
            sens = "n/a" if d["sensitivity"] is None else f"{d['sensitivity']:.2f}"
            spec = "n/a" if d["specificity"] is None else f"{d['specificity']:.2f}"
            click.echo(f"  {key:12} sensitivity {sens} specificity {spec} over {d['cases']} (withheld {d['withheld']})")
    if s["cps"]["cases"]:
        click.echo(f"  CPS          weighted kappa {s['cps']['weighted_kappa']:.3f} over {s['cps']['cases']}")
    click.echo(f"report: {files[0]}")


def card_calibration(checkpoint: Path):
    """The lesion volume calibration in the checkpoint's model card, as the server will apply it (None: none)."""
    from collat_ensemble.hypoperfusion import VolumeCalibration

    from ..onnx_export import lesion_calibration

    doc = lesion_calibration(str(checkpoint), "hypo")  # what the export puts into model.json for the server
    try:
        return None if doc is None else VolumeCalibration.from_dict(doc)
    except ValueError as exc:
        raise ValueError(f"{checkpoint.parent / 'model_card.json'}: {exc}") from None


def card_domain(checkpoint: Path):
    """The training domain in the checkpoint's model card, as the server's plausibility gate reads it (None: none)."""
    from collat_ensemble.quality import TrainingDomain

    from ..onnx_export import training_domain

    doc = training_domain(str(checkpoint), "hypo")
    try:
        return None if doc is None else TrainingDomain.from_dict(doc)
    except ValueError as exc:
        raise ValueError(f"{checkpoint.parent / 'model_card.json'}: {exc}") from None


@main.command("fit-volume")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--seeds", default="1300000-1300079", show_default=True,
              help="FIRST-LAST training phantom seeds (>= 1,000,000) to fit on.")
@click.option("--space", type=click.Choice(["mni", "native"]), default="native", show_default=True)
@click.option("--write", is_flag=True, help="Store the calibration in the checkpoint's model card (the server "
                                            "applies it from there once the repository is rebuilt).")
def fit_volume(checkpoint: Path, seeds: str, space: str, write: bool) -> None:
    """Fit the U-Net's lesion volume calibration on training phantoms.

    The phantom-trained U-Net pulls every lesion towards the typical size (small ones grow, mid-sized ones
    shrink). The calibration maps its volume, the core and the NIHSS to the true volume on training seeds; the
    served lesion then takes that many voxels in the network's order of probability.

    \b
    Example:
      collat-train fit-volume --checkpoint weights/hypo_tiny/checkpoint.pt --seeds 1300000-1300079 --write
    """
    from collat_ensemble.phantom import EVALUATION_SEED_LIMIT

    from ..checkpoint import CheckpointError, load_checkpoint
    from .data import parse_seed_range
    from .evaluate import fit_volume_calibration, hypo_rows

    try:
        seed_list = parse_seed_range(seeds)
        if seed_list[0] < EVALUATION_SEED_LIMIT:
            raise ValueError(f"the calibration is fitted on training seeds (>= {EVALUATION_SEED_LIMIT:,}), got {seeds}")
        loaded = load_checkpoint(checkpoint, model="hypo")
        rows = hypo_rows(loaded.network, seed_list, _echo, space=space)
        calibration = fit_volume_calibration(rows, f"phantom seeds {seed_list[0]}-{seed_list[-1]} ({space} space)")
    except (CheckpointError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    doc = calibration.as_dict()
    click.echo(json.dumps(doc, indent=2))
    if write:
        card_path = checkpoint.parent / "model_card.json"
        if not card_path.is_file():
            click.echo(f"error: {card_path}: no model card beside the checkpoint to hold the calibration", err=True)
            sys.exit(2)
        card = json.loads(card_path.read_text())
        card["lesion_calibration"] = doc
        _rewrite_card_document(checkpoint, card)
        _echo(f"calibration written to {card_path} (and model_card.md)")


@main.command("domain")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--space", type=click.Choice(["mni", "native", "mixed"]), default="mixed", show_default=True,
              help="The --space the weights' last training run was given (their card's command).")
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--write", is_flag=True, help="Store the domain in the checkpoint's model card (the server reads it "
                                            "from there once the repository is rebuilt).")
def domain(checkpoint: Path, space: str, workers: int, write: bool) -> None:
    """Record the U-Net weights' training domain (their training cases' cores, and the largest lesion around cores
    of each size). A training run records it itself; this recomputes it from the card's training seeds.

    The server withholds a lesion far larger than any the weights were shown around a core like the scan's: a
    normal brain or a lacune read as a hemispheric stroke is outside what the network was trained on.

    \b
    Example:
      collat-train domain --checkpoint weights/hypo_tiny/checkpoint.pt --workers 2 --write
    """
    from collat_ensemble.phantom.case import PHANTOM_VERSION

    from .domain import domain_document, training_volumes

    card_path = checkpoint.parent / "model_card.json"
    try:
        card = json.loads(card_path.read_text())
        training = card["training"]
        if "interpolated_from" in training:
            click.echo(f"error: {card_path}: the weights are an average of checkpoints, each trained on its own "
                       "cases: record the domain of the fine-tune averaged in (docs/training.md)", err=True)
            sys.exit(2)
        first, last = (int(v) for v in training["seeds"])
        version = str(training.get("phantom_version", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        click.echo(f"error: {card_path}: no model card with the training seeds ({exc})", err=True)
        sys.exit(2)
    if card.get("model") != "hypo":
        click.echo(f"error: {card_path}: a training domain is recorded for U-Net weights, not {card.get('model')}",
                   err=True)
        sys.exit(2)
    if version != PHANTOM_VERSION:
        click.echo(f"error: {card_path}: trained on phantom version {version or 'unknown'}, this phantom is version "
                   f"{PHANTOM_VERSION}: its seeds no longer make the training cases", err=True)
        sys.exit(2)
    seeds = list(range(first, last + 1))
    kinds = str(training.get("kinds", "mca"))  # weights from before phantom version 4 saw MCA strokes only
    _echo(f"measuring the cores and lesions of {len(seeds)} training cases ({space} space, kinds {kinds}) with "
          f"{workers} workers")
    doc = domain_document(seeds, training_volumes(seeds, space, kinds, workers), kinds)
    click.echo(json.dumps(doc, indent=2))
    if write:
        card["training_domain"] = doc
        _rewrite_card_document(checkpoint, card)
        _echo(f"training domain written to {card_path} (and model_card.md)")


def _grading_cases(checkpoint: Path, seeds: str, workers: int, training: bool, quiet: bool):
    from collat_ensemble.contrast import trained_dsc_conversion
    from collat_ensemble.phantom import EVALUATION_SEED_LIMIT

    from ..checkpoint import CheckpointError, load_checkpoint
    from .data import parse_seed_range
    from .grading import collect

    try:
        seed_list = parse_seed_range(seeds)
        if training and seed_list[0] < EVALUATION_SEED_LIMIT:
            raise ValueError(f"the rule is fitted on training seeds (>= {EVALUATION_SEED_LIMIT:,}), got {seeds}")
        if not training and seed_list[-1] >= EVALUATION_SEED_LIMIT:
            raise ValueError(f"evaluation seeds must be below {EVALUATION_SEED_LIMIT:,}, got {seeds}")
        loaded = load_checkpoint(checkpoint, model="mrod")
        return seed_list, collect(loaded.network, loaded.preset, seed_list, workers=workers,
                                  progress=None if quiet else _echo,
                                  dsc_conversion=trained_dsc_conversion(loaded.training))
    except (CheckpointError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _print_agreement(result: dict) -> None:
    from collat_ensemble.territory import CPS_PHASES

    click.echo("ratios " + ", ".join(f"{p} {result['ratios'][p]:g}" for p in CPS_PHASES) +
               f"; phantom grades 0-5: {result['truth_grades']}")
    for source in ("network", "conventional"):
        for group, a in result[source].items():
            if isinstance(a, dict):
                click.echo(f"  {source:12} {group:12} {a['cases']:4d} series  exact {a['exact']:.3f}  "
                           f"within one {a['within_one']:.3f}  weighted kappa {a['weighted_kappa']:.3f}")
        click.echo(f"  {source:12} side correct {result[source]['side_correct']:.3f}")
        click.echo(f"  {source:12} confusion (rows: phantom grade 0-5): {result[source]['all']['confusion']}")
        click.echo(f"  {source:12} per grade: " + "; ".join(
            f"{g}: {a['exact']:.2f} exact, {a['within_one']:.2f} within one of {a['cases']}"
            for g, a in result[source]["all"]["per_grade"].items()))


def _evaluate_cps(checkpoint: Path, seeds: str, as_json: bool, workers: int, update_card: bool,
                  plot: Path | None = None) -> None:
    from collat_ensemble.errors import InputValidationError
    from collat_ensemble.phantom.case import PHANTOM_VERSION

    from ..onnx_export import served_cps_rule
    from .grading import report

    try:
        rule = served_cps_rule(checkpoint)  # as the server grades these weights' maps
    except InputValidationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    seed_list, cases = _grading_cases(checkpoint, seeds, workers, training=False, quiet=as_json)
    result = {"model": "cps", "seeds": [seed_list[0], seed_list[-1]], "phantom_version": PHANTOM_VERSION,
              "rule": rule.as_dict(), **report(cases, rule.ratios, rule.floor)}
    if plot is not None:
        from ..datasets.report import confusion_plot

        plot.parent.mkdir(parents=True, exist_ok=True)
        confusion_plot(plot, result["network"]["all"]["confusion"], [str(g) for g in range(6)],
                       f"CPS: 3D-MROD-Net vs phantom, seeds {seed_list[0]}-{seed_list[-1]} x DCE, DSC")
    if update_card:
        from ..checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint, model="mrod")
        _rewrite_card(checkpoint, loaded.preset.name, loaded.training, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print_agreement(result)


@main.command("fit-cps")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A 3D-MROD-Net checkpoint.")
@click.option("--seeds", default="1100000-1100099", show_default=True,
              help="FIRST-LAST training phantom seeds (>= 1,000,000; the default range is not the one the shipped "
                   "network trained on); each in DCE and DSC.")
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the rule here (collat_ensemble/cps_rule.json: the server's rule for a network without "
                   "one of its own).")
@click.option("--update-card", is_flag=True,
              help="Write the rule into the checkpoint's model card (cps_rule): the server grades these weights' "
                   "maps with it.")
def fit_cps(checkpoint: Path, seeds: str, workers: int, out: Path | None, update_card: bool) -> None:
    """Choose the CPS rule's darker-than-mirror ratio per phase on training phantoms (the network's maps).

    \b
    Example:
      collat-train fit-cps --checkpoint weights/mrod_fine/checkpoint.pt --workers 2 --update-card
    """
    from collat_ensemble.phantom.grading import TRUTH_FLOOR

    from .grading import fit_ratios, report

    seed_list, cases = _grading_cases(checkpoint, seeds, workers, training=True, quiet=False)
    ratios = fit_ratios(cases, "network", TRUTH_FLOOR)
    result = report(cases, ratios, TRUTH_FLOOR)
    _print_agreement(result)
    command = "collat-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rule = {"ratios": ratios, "floor": TRUTH_FLOOR,
            "fitted_on": f"{len(cases)} phantom series (seeds {seed_list[0]}-{seed_list[-1]}, DCE and DSC, odd seeds "
                         f"moving), maps of {checkpoint}; training exact agreement "
                         f"{result['network']['all']['exact']:.3f}; {command}"}
    if out is not None:
        partial = out.with_name(f".{out.name}.partial")
        partial.write_text(json.dumps(rule, indent=2) + "\n")
        partial.replace(out)
        _echo(f"rule written to {out}")
    if update_card:
        _echo(f"rule written to {_record_in_card(checkpoint, 'cps_rule', rule)} (cps_rule)")


@main.command("stride-study")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A hypoperfusion U-Net checkpoint.")
@click.option("--seeds", default="0-19", show_default=True, help="FIRST-LAST held-out phantom seeds (< 1,000,000).")
@click.option("--space", type=click.Choice(["mni", "native"]), default="native", show_default=True)
@click.option("--stride", "strides", type=int, multiple=True, default=(4, 8, 16), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def stride_study_command(checkpoint: Path, seeds: str, space: str, strides: tuple[int, ...], as_json: bool) -> None:
    """Median Dice and DEFUSE 3 accuracy of the served path at several sliding-window strides of the U-Net.

    \b
    Example:
      collat-train stride-study --checkpoint export/src/collat_export/weights/hypo_tiny/checkpoint.pt --seeds 0-19
    """
    from ..checkpoint import load_checkpoint
    from .data import parse_seed_range
    from .evaluate import stride_study

    network = load_checkpoint(checkpoint, model="hypo").network
    results = stride_study(network, parse_seed_range(seeds), tuple(strides), space, progress=_echo)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for stride, r in results.items():
        click.echo(f"stride {stride:>2}: {r['windows']:>2} windows  median Dice {r['median_dice']:.4f}  "
                   f"DEFUSE 3 accuracy {r['defuse3_accuracy']:.2f}")


@main.command("dataset")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="The dataset's root: BIDS (SOOP, ISLES'22 or plain) or one DICOM study folder per subject.")
@click.option("--layout", "layout_name", type=click.Choice(LAYOUT_NAMES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The counts, the digest and every subject as JSON.")
def dataset(data: Path, layout_name: str, as_json: bool) -> None:
    """List a labelled dataset as training and evaluation will read it: each subject's images and clinical fields,
    and what each one lacks (a subject is never dropped silently).

    \b
    Example:
      collat-train dataset --data /data/ds004889
    """
    from ..datasets import DatasetError, read_dataset

    try:
        read = read_dataset(data, _layout(layout_name))
    except DatasetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        subjects = [{"id": s.id, "paths": {k: None if v is None else str(v) for k, v in vars(s.paths).items()},
                     "clinical": vars(s.clinical), "missing": list(s.missing), "problems": list(s.problems)}
                    for s in read.subjects]
        click.echo(json.dumps({"root": str(read.root), "summary": read.summary(), "file_digest": read.file_digest,
                               "subjects": subjects}, indent=2))
        return
    summary = read.summary()
    click.echo(f"{read.root}: {read.layout} layout, {summary['subjects']} subjects, {summary['complete']} complete, "
               f"file digest {read.file_digest[:16]}")
    click.echo("  " + ", ".join(f"{k.removeprefix('with_')} {v}" for k, v in summary.items()
                                if k.startswith("with_") and v))
    for line in read.listing():
        click.echo(f"  {line}")


@main.command("precision")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--seeds", default="0-199", show_default=True, help="FIRST-LAST held-out phantom seeds (200 to accept).")
@click.option("--threads", type=int, default=0, show_default=True, help="OpenVINO threads (0: all cores).")
@click.option("--update-card", is_flag=True, help="Record the measurement (and what it accepts) in the model card.")
def precision(checkpoint: Path, seeds: str, threads: int, update_card: bool) -> None:
    """Measure BF16 against FP32 on the served path (OpenVINO) on held-out phantoms; with --update-card the card
    records it and the precisions it accepts, which the served network may then use where the CPU has the units.

    \b
    Example:
      collat-train precision --checkpoint weights/mrod_fine/checkpoint.pt --seeds 0-199 --update-card
    """
    from ..checkpoint import CheckpointError
    from ..precision import measure_precisions
    from .data import parse_seed_range

    try:
        record = measure_precisions(checkpoint, parse_seed_range(seeds), threads=threads, progress=_echo)
    except (CheckpointError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if update_card:
        _echo(f"model card rewritten: {_record_in_card(checkpoint, 'precision', record)}")
    click.echo(json.dumps(record, indent=2))


@main.command("quantize")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--threads", type=int, default=0, show_default=True, help="OpenVINO threads (0: all cores).")
def quantize(checkpoint: Path, threads: int) -> None:
    """Quantize the weights to INT8 (NNCF post-training quantization with accuracy control, on phantom series fed
    as the server feeds them) into model_int8.xml/.bin beside the checkpoint, and record how in the model card.
    The served network runs it only once `collat-train precision --update-card` has accepted int8.

    \b
    Example:
      collat-train quantize --checkpoint weights/hypo_tiny/checkpoint.pt
      collat-train precision --checkpoint weights/hypo_tiny/checkpoint.pt --seeds 0-199 --update-card
    """
    from ..checkpoint import CheckpointError
    from ..quantize import QuantizationUnavailable, quantize_checkpoint

    try:
        record = quantize_checkpoint(checkpoint, threads=threads, progress=_echo)
    except (CheckpointError, QuantizationUnavailable, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _echo(f"wrote {', '.join(record['files'])} and {_record_in_card(checkpoint, 'int8', record)}")
    click.echo(json.dumps(record, indent=2))


@main.command("phantom-dataset")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The dataset's root folder.")
@click.option("--layout", type=click.Choice(["soop", "isles22", "bids"]), default="bids", show_default=True,
              help="bids adds the perfusion series, Tmax and the phase maps to what SOOP and ISLES'22 carry.")
@click.option("--seeds", default="0-9", show_default=True, help="FIRST-LAST phantom seeds.")
@click.option("--kinds", type=click.Choice(["mixed", *KINDS]), default="mca", show_default=True)
def phantom_dataset(out: Path, layout: str, seeds: str, kinds: str) -> None:
    """Write phantom cases as a labelled dataset (known truth) to try `collat-train evaluate --data` on.

    \b
    Example:
      collat-train phantom-dataset --out /tmp/phantom-bids --seeds 0-9
      collat-train evaluate --data /tmp/phantom-bids --out /tmp/report
    """
    from ..datasets.phantom_dataset import write_phantom_dataset
    from .data import parse_seed_range

    try:
        seed_list = parse_seed_range(seeds)
    except ValueError as exc:
        click.echo(f"error: --seeds {seeds}: {exc}", err=True)
        sys.exit(2)
    write_phantom_dataset(out, seed_list, layout, kind=kinds, progress=_echo)  # type: ignore[arg-type]
    click.echo(f"{out}: {len(seed_list)} subjects in the {layout} layout")


if __name__ == "__main__":  # pragma: no cover
    main()

"""Training loops for both networks (SPEC sections 2 and 3), CPU-friendly.

3D-MROD-Net: Adam (0.9, 0.999, eps 1e-8), lr 1e-3 halved after ``patience`` epochs without
validation improvement, horizontal flips with p = 0.5. U-Net: Adam lr 5e-4 with exponential
decay, flips, random slabs; on CPU it trains on in-plane crops (``crop``) of the slabs,
which the fully convolutional network then runs on whole 128x128 slabs at inference.
The best validation checkpoint is kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from collat_ensemble.preprocess import SLAB, slab_starts

from ..networks import MRODNet, build_network
from ..networks.mrod import to_grid, to_grid_of
from ..presets import Preset
from .data import HypoSample, MRODSample
from .losses import hypo_loss, mrod_loss


@dataclass
class TrainConfig:
    epochs: int
    batch: int
    lr: float
    patience: int = 10
    lr_decay: float = 0.97  # per epoch, U-Net
    slabs_per_case: int = 4  # U-Net samples drawn per case and epoch
    crop: int = 64  # U-Net in-plane crop while training (0 = whole slab); fine 3D-MROD-Net: the fine head's crop
    seed: int = 0
    threads: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    network: torch.nn.Module
    best_epoch: int
    best_val_loss: float
    history: list[dict]
    seconds: float


Progress = Callable[[str], None]
Snapshot = Callable[[dict], None]


def _snapshot(net: torch.nn.Module, opt: torch.optim.Optimizer, sched, rng: np.random.Generator, epoch: int,
              best: float, best_state: dict | None, best_epoch: int, history: list[dict]) -> dict:
    """Everything an interrupted run needs to go on exactly where it stopped (after ``epoch`` epochs)."""
    return {"epoch": epoch, "network": copy.deepcopy(net.state_dict()), "optimizer": copy.deepcopy(opt.state_dict()),
            "scheduler": sched.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "best": best, "best_state": best_state, "best_epoch": best_epoch, "history": list(history)}


def _restore(state: dict, net: torch.nn.Module, opt: torch.optim.Optimizer, sched,
             rng: np.random.Generator) -> tuple[int, float, dict | None, int, list[dict]]:
    net.load_state_dict(state["network"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["best"], state["best_state"], state["best_epoch"], list(state["history"])


def _eta(start: float, done: int, total: int) -> str:
    if done == 0:
        return "?"
    left = (time.perf_counter() - start) / done * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s"


def _mrod_batch(samples: list[MRODSample], rng: np.random.Generator, augment: bool):
    xs, ts, ms = [], [], []
    for s in samples:
        x, t, m = s.x.astype(np.float32), s.target.astype(np.float32), s.mask
        if augment and rng.random() < 0.5:  # horizontal flip: the W axis (left-right)
            x, t, m = x[..., ::-1], t[..., ::-1], m[..., ::-1]
        xs.append(np.ascontiguousarray(x)), ts.append(np.ascontiguousarray(t)), ms.append(np.ascontiguousarray(m))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)), torch.from_numpy(np.stack(ms))


CROP_MARGIN = 2  # voxels at a crop's edge left out of the fine loss: its convolutions see zero padding there


def load_initial_state(net: torch.nn.Module, state: dict) -> None:
    """Load weights to start from; a coarse (tiny) 3D-MROD-Net's into a fine one leaves only the fine head new,
    which starts at zero (the fine network then begins as the coarse one)."""
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise ValueError(f"the initial weights do not fit this network: {str(exc).splitlines()[1].strip()}") from None
    foreign = [k for k in missing if not k.startswith("fine.")] + list(unexpected)
    if foreign:
        raise ValueError(f"the initial weights do not fit this network: {', '.join(foreign[:5])}")


def _crop_window(height: int, width: int, crop: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """A random in-plane ``crop`` x ``crop`` window (the whole plane where it is smaller)."""
    size_h, size_w = min(crop, height), min(crop, width)
    y0, x0 = int(rng.integers(0, height - size_h + 1)), int(rng.integers(0, width - size_w + 1))
    return slice(y0, y0 + size_h), slice(x0, x0 + size_w)


def _fine_crop_loss(net: MRODNet, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor, up_f: torch.Tensor,
                    up_maps: torch.Tensor) -> torch.Tensor:
    """Masked L2 of the fine head's maps on one crop whose coarse outputs are already on its grid; a crop's
    edge is left out, where the head's convolutions see zero padding the whole volume does not have."""
    fine = torch.tanh(net.fine(x, up_f, up_maps))
    h, w = x.shape[-2:]
    inside = torch.zeros_like(m, dtype=torch.bool)
    inside[..., CROP_MARGIN:h - CROP_MARGIN, CROP_MARGIN:w - CROP_MARGIN] = True
    weight = (m & inside).unsqueeze(1).to(fine.dtype)
    return (((fine - t) ** 2) * weight).sum() / (weight.sum() * fine.shape[1]).clamp_min(1.0)


def fine_training_loss(net: MRODNet, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor, rng: np.random.Generator,
                       crop: int, coarse: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """A fine 3D-MROD-Net's loss: its coarse path is a trained tiny network and stays as it is (frozen, run on
    the whole volume, whose global context the maps' normalization needs); the fine head learns the masked L2 of
    the full-resolution maps on one in-plane crop (a whole 128x128x20 head costs seconds per step on a CPU).
    A frozen coarse path gives each sample the same features every epoch, so the loop computes them once."""
    with torch.no_grad():
        f, maps = net.coarse(x) if coarse is None else coarse  # ``coarse``: computed once per sample beforehand
        up_f, up_maps = to_grid_of(f.float(), x), to_grid_of(maps.float(), x)
    window = (..., *_crop_window(x.shape[-2], x.shape[-1], crop, rng))
    return _fine_crop_loss(net, x[window], t[window], m[window], up_f[window], up_maps[window])


def _coarse_outputs(net: MRODNet, samples: list[MRODSample]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The frozen coarse path's features and maps of each sample, and of its left-right mirror image (the flip
    augmentation), kept in float16."""
    out = []
    with torch.no_grad():
        for s in samples:
            x = torch.from_numpy(s.x.astype(np.float32))[None]
            pairs = [net.coarse(x), net.coarse(torch.flip(x, dims=(-1,)))]
            out.append(tuple(torch.cat([p[k] for p in pairs]).half() for k in (0, 1)))
    return out


def _fine_batch(samples: list[MRODSample], coarse: list[tuple[torch.Tensor, torch.Tensor]],
                rng: np.random.Generator, crop: int) -> tuple[torch.Tensor, ...]:
    """One training batch for the fine head, all on one random in-plane crop: inputs, targets, masks (each
    sample flipped left-right with p = 0.5) and the coarse features and maps of the same (flipped or not)
    inputs brought onto the crop. The crop is cut before anything is converted to float32: converting the whole
    60-frame volumes took 40 % of a step."""
    depth, height, width = samples[0].x.shape[1:]
    rows, cols = _crop_window(height, width, crop, rng)
    xs, ts, ms, fs, cs = [], [], [], [], []
    for s, (f, maps) in zip(samples, coarse, strict=True):
        flip = rng.random() < 0.5
        x, t, m = s.x, s.target, s.mask
        if flip:
            x, t, m = x[..., ::-1], t[..., ::-1], m[..., ::-1]
        xs.append(x[..., rows, cols].astype(np.float32)), ts.append(t[..., rows, cols].astype(np.float32))
        ms.append(np.ascontiguousarray(m[..., rows, cols]))
        fs.append(f[int(flip)]), cs.append(maps[int(flip)])
    with torch.no_grad():
        up = [to_grid(torch.stack(c).float(), (depth, height, width))[..., rows, cols] for c in (fs, cs)]
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)), torch.from_numpy(np.stack(ms)), *up


def _recalibrate_fine_norms(net: MRODNet, samples: list[MRODSample], coarse: list[tuple[torch.Tensor, torch.Tensor]],
                            rng: np.random.Generator, crop: int, batch: int) -> None:
    """Set the fine head's batch-norm statistics to their average over one pass of training crops. With the
    default running average, the last few small batches set them, and the validation loss jumped from one epoch to
    the next while the training loss fell steadily (docs/training.md, "The fine preset")."""
    norms = [m for m in net.fine.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [n.momentum for n in norms]
    for n in norms:
        n.reset_running_stats()
        n.momentum = None  # a cumulative average
    net.fine.train()
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            x, _, _, up_f, up_maps = _fine_batch(samples[i:i + batch], coarse[i:i + batch], rng, crop)
            net.fine(x, up_f, up_maps)
    for n, momentum in zip(norms, momenta, strict=True):
        n.momentum = momentum
    net.eval()


def train_mrod(preset: Preset, train: list[MRODSample], val: list[MRODSample], cfg: TrainConfig,
               progress: Progress = print, init_state: dict | None = None,
               on_best: Callable[[torch.nn.Module, int], None] | None = None,
               resume: dict | None = None, on_epoch: Snapshot | None = None) -> TrainResult:
    """``on_best(network, epoch)``: called at each new best validation loss, so a long run that is stopped keeps
    its best weights so far. ``on_epoch(snapshot)`` after every epoch; ``resume``: such a snapshot to go on from."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = build_network(preset)
    if init_state is not None:  # fine-tuning: start from given weights
        load_initial_state(net, init_state)
    trained = net.fine.parameters() if net.fine is not None else net.parameters()
    opt = torch.optim.Adam(trained, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=cfg.patience)
    best, best_state, best_epoch, history = math.inf, None, -1, []
    first = 0
    if resume is not None:
        first, best, best_state, best_epoch, history = _restore(resume, net, opt, sched, rng)
        progress(f"resuming after epoch {first} (best {best:.4f}@{best_epoch + 1})")
    start = time.perf_counter()
    if net.fine is not None:
        net.eval()
        coarse = _coarse_outputs(net, train)
        progress(f"coarse path run once on {len(train)} training samples ({time.perf_counter() - start:.0f} s)")
    for epoch in range(first, cfg.epochs):
        net.train()
        if net.fine is not None:  # the coarse path's batch norms keep the statistics it was trained with
            net.eval()
            net.fine.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), cfg.batch):
            chosen = order[i:i + cfg.batch]
            if net.fine is not None:
                x, t, m, up_f, up_maps = _fine_batch([train[j] for j in chosen], [coarse[j] for j in chosen], rng,
                                                     cfg.crop)
                loss = _fine_crop_loss(net, x, t, m, up_f, up_maps)
            else:
                x, t, m = _mrod_batch([train[j] for j in chosen], rng, augment=True)
                pred, logits = net.forward_train(x)
                loss = mrod_loss(pred, logits, t, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if net.fine is not None:
            _recalibrate_fine_norms(net, train, coarse, rng, cfg.crop, cfg.batch)
        net.eval()
        with torch.no_grad():
            val_losses = []
            for i in range(0, len(val), cfg.batch):
                x, t, m = _mrod_batch(val[i:i + cfg.batch], rng, augment=False)
                if net.fine is not None:  # what the fine head learns, on the whole volume
                    weight = m.unsqueeze(1).float()
                    val_losses.append(float((((net(x) - t) ** 2) * weight).sum() / (weight.sum() * t.shape[1])))
                else:
                    pred, logits = net.forward_train(x)
                    val_losses.append(float(mrod_loss(pred, logits, t, m)))
        val_loss = float(np.mean(val_losses)) if val_losses else float(np.mean(losses))
        sched.step(val_loss)
        if val_loss < best:
            best, best_state, best_epoch = val_loss, copy.deepcopy(net.state_dict()), epoch
            if on_best is not None:
                on_best(net, epoch + 1)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"]})
        progress(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} val {val_loss:.4f} "
                 f"best {best:.4f}@{best_epoch + 1} lr {opt.param_groups[0]['lr']:.1e} "
                 f"ETA {_eta(start, epoch + 1 - first, cfg.epochs - first)}")
        if on_epoch is not None:
            on_epoch(_snapshot(net, opt, sched, rng, epoch + 1, best, best_state, best_epoch, history))
    net.load_state_dict(best_state)
    return TrainResult(net.eval(), best_epoch + 1, best, history, time.perf_counter() - start)


def _hypo_batch(samples: list[HypoSample], rng: np.random.Generator, crop: int, augment: bool):
    starts = slab_starts(samples[0].volume.shape[1])
    xs, ys, ns = [], [], []
    for s in samples:
        # Prefer slabs that hold lesion (3 in 4), as the lesion occupies a minority of slices.
        with_lesion = [z for z in starts if s.lesion[z:z + SLAB].any()]
        z = int(rng.choice(with_lesion if with_lesion and rng.random() < 0.75 else starts))
        x = s.volume[:, z:z + SLAB].astype(np.float32)
        y = s.lesion[None, z:z + SLAB].astype(np.float32)
        if crop:
            h, w = x.shape[-2:]
            ys_idx, xs_idx = np.nonzero(y[0].any(axis=0))
            if ys_idx.size and rng.random() < 0.75:  # centre most crops near the lesion
                k = rng.integers(len(ys_idx))
                jitter = rng.integers(-crop // 4, crop // 4 + 1, size=2)
                cy, cx = ys_idx[k] + jitter[0], xs_idx[k] + jitter[1]
            else:
                cy, cx = rng.integers(crop // 2, h - crop // 2 + 1), rng.integers(crop // 2, w - crop // 2 + 1)
            y0 = int(np.clip(cy - crop // 2, 0, h - crop))
            x0 = int(np.clip(cx - crop // 2, 0, w - crop))
            x, y = x[..., y0:y0 + crop, x0:x0 + crop], y[..., y0:y0 + crop, x0:x0 + crop]
        if augment and rng.random() < 0.5:
            x, y = x[..., ::-1], y[..., ::-1]
        xs.append(np.ascontiguousarray(x)), ys.append(np.ascontiguousarray(y)), ns.append([s.nihss])
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.asarray(ns, dtype=np.float32)),
            torch.from_numpy(np.stack(ys)))


def train_hypo(preset: Preset, train: list[HypoSample], val: list[HypoSample], cfg: TrainConfig,
               progress: Progress = print, init_state: dict | None = None, resume: dict | None = None,
               on_epoch: Snapshot | None = None) -> TrainResult:
    """``on_epoch(snapshot)`` after every epoch; ``resume``: such a snapshot to go on from."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    val_rng_seed = cfg.seed + 1
    net = build_network(preset)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    best, best_state, best_epoch, history = math.inf, None, -1, []
    first = 0
    if resume is not None:
        first, best, best_state, best_epoch, history = _restore(resume, net, opt, sched, rng)
        progress(f"resuming after epoch {first} (best {best:.4f}@{best_epoch + 1})")
    start = time.perf_counter()
    for epoch in range(first, cfg.epochs):
        net.train()
        pool = np.repeat(np.arange(len(train)), cfg.slabs_per_case)
        rng.shuffle(pool)
        losses = []
        for i in range(0, len(pool), cfg.batch):
            x, n, y = _hypo_batch([train[j] for j in pool[i:i + cfg.batch]], rng, cfg.crop, augment=True)
            loss = hypo_loss(net(x, n), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        net.eval()
        vrng = np.random.default_rng(val_rng_seed)  # the same validation slabs every epoch
        with torch.no_grad():
            val_losses = [float(hypo_loss(net(x, n), y)) for x, n, y in
                          (_hypo_batch(val[i:i + cfg.batch], vrng, cfg.crop, augment=False)
                           for i in range(0, len(val), cfg.batch))]
        val_loss = float(np.mean(val_losses)) if val_losses else float(np.mean(losses))
        if val_loss < best:
            best, best_state, best_epoch = val_loss, copy.deepcopy(net.state_dict()), epoch
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"]})
        progress(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} val {val_loss:.4f} "
                 f"best {best:.4f}@{best_epoch + 1} ETA {_eta(start, epoch + 1 - first, cfg.epochs - first)}")
        if on_epoch is not None:
            on_epoch(_snapshot(net, opt, sched, rng, epoch + 1, best, best_state, best_epoch, history))
    net.load_state_dict(best_state)
    return TrainResult(net.eval(), best_epoch + 1, best, history, time.perf_counter() - start)

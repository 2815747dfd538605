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

from ..networks import build_network
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
    crop: int = 64  # U-Net in-plane crop while training (0 = whole slab)
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


def train_mrod(preset: Preset, train: list[MRODSample], val: list[MRODSample], cfg: TrainConfig,
               progress: Progress = print, init_state: dict | None = None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = build_network(preset)
    if init_state is not None:  # fine-tuning: start from given weights
        net.load_state_dict(init_state)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=cfg.patience)
    best, best_state, best_epoch, history = math.inf, None, -1, []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), cfg.batch):
            x, t, m = _mrod_batch([train[j] for j in order[i:i + cfg.batch]], rng, augment=True)
            pred, logits = net.forward_train(x)
            loss = mrod_loss(pred, logits, t, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        net.eval()
        with torch.no_grad():
            val_losses = []
            for i in range(0, len(val), cfg.batch):
                x, t, m = _mrod_batch(val[i:i + cfg.batch], rng, augment=False)
                pred, logits = net.forward_train(x)
                val_losses.append(float(mrod_loss(pred, logits, t, m)))
        val_loss = float(np.mean(val_losses)) if val_losses else float(np.mean(losses))
        sched.step(val_loss)
        if val_loss < best:
            best, best_state, best_epoch = val_loss, copy.deepcopy(net.state_dict()), epoch
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"]})
        progress(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} val {val_loss:.4f} "
                 f"best {best:.4f}@{best_epoch + 1} lr {opt.param_groups[0]['lr']:.1e} "
                 f"ETA {_eta(start, epoch + 1, cfg.epochs)}")
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
               progress: Progress = print, init_state: dict | None = None) -> TrainResult:
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
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
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
                 f"best {best:.4f}@{best_epoch + 1} ETA {_eta(start, epoch + 1, cfg.epochs)}")
    net.load_state_dict(best_state)
    return TrainResult(net.eval(), best_epoch + 1, best, history, time.perf_counter() - start)

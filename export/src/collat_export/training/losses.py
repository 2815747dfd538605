"""The studies' losses (SPEC sections 2 and 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..networks import sid_bin_edges


def ordinal_targets(maps: Tensor, bins: int) -> Tensor:
    """Bin index of each target value (maps in [-1, 1] -> [0, 1]) under the SID discretization."""
    edges = sid_bin_edges(bins).to(maps.device)
    return torch.bucketize(((maps + 1.0) / 2.0).clamp(0.0, 1.0), edges[1:-1])


def mrod_loss(pred: Tensor, logits: Tensor, target: Tensor, mask: Tensor,
              phase_weights: Tensor | None = None) -> Tensor:
    """0.75 x masked per-phase squared error + 0.25 x ordinal cross entropy (softmax over K bins)."""
    m = mask.unsqueeze(1).to(pred.dtype)  # [N, 1, D, H, W]
    weights = phase_weights if phase_weights is not None else torch.ones(pred.shape[1], device=pred.device)
    sq = ((pred - target) ** 2) * m * weights.view(1, -1, 1, 1, 1)
    l2 = sq.sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)
    bins = logits.shape[2]
    ce = F.cross_entropy(logits.transpose(1, 2), ordinal_targets(target, bins), reduction="none")  # [N,5,D,H,W]
    ce = (ce * m).sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)
    return 0.75 * l2 + 0.25 * ce


def hypo_loss(prob: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """BCE + (1 - soft Dice over the whole batch) + lesion-fraction error per crop.

    Dice is pooled over the batch because most training crops hold no lesion: a per-crop Dice of an empty crop
    is 1 / (1 + predicted voxels), which punishes any positive voxel far more than a missed lesion and taught
    the first demo weights to underestimate volumes. The volume term compares lesion fractions of each crop
    (normalized by crop size, not by lesion size, for the same reason).
    """
    prob = prob.clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy(prob, target)
    inter = (prob * target).sum()
    dice = (2 * inter + eps) / (prob.sum() + target.sum() + eps)
    dims = tuple(range(1, prob.ndim))
    fraction_error = (prob.mean(dims) - target.mean(dims)).abs()
    return bce + (1.0 - dice) + 10.0 * fraction_error.mean()

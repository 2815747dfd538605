"""3D-MROD-Net: EfficientNet-B0 encoder in 3D, ASPP, a four-stage residual decoder.

Layout follows SPEC section 2: input ``[N, T, D, H, W]`` with the T dynamics as channels,
output ``[N, 5, D, H, W]`` (arterial, capillary, early venous, late venous, delay) in
[-1, 1]. The slice axis D is short (about 20) and its spacing coarse, so every stride and
every transposed convolution acts on H and W only (``1x2x2``); D may be any size >= 1.
The encoder reduces H and W by 32 (stem 2 x four stride-2 stages), hence the rule that
H and W be multiples of 32 (:func:`check_mrod_input`).

Decoder: four stages, each a ``3x2x2`` transposed convolution that doubles H and W and a
residual layer of ``3x1x1``, ``3x3x3``, ``3x1x1`` convolutions (as in 3D-MDRNN), fed by
skip connections at strides 16, 8, 4 and 2. The heads add the last doubling back to the
input resolution. The ordinal head (K SID bins per phase) exists for training only and
is not exported.

Fine path (``fine_channels`` > 0, the ``fine`` preset): the encoder-decoder above is the
coarse path and runs on the input resampled by ``coarse_scale`` (a 128x128x20 grid becomes the
tiny preset's 64x64x12, so a tiny network's weights are its coarse path as they are), and a
full-resolution head adds what that grid cannot hold. The phase maps are, to a first
approximation, a fine anatomy (grey/white matter, vessels, partial volume with CSF) times
smooth haemodynamics; the coarse path estimates the haemodynamics, while the fine head sees
every input voxel's own curve (a 1x1x1 projection of the T frames) beside the coarse features
and maps brought back to the input grid, and adds a correction to the coarse maps before the
tanh. Its last convolution starts at zero, so a fine network starts as its coarse path does.

``mirror_average`` (on for ``fine``): the served maps are the mean of the maps of the series and of its
left-right mirror image (mirrored back), as segmentation networks average over flips at test time. Training
runs single passes (``forward_train``); the average is a property of the served function and exported with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..presets import MRODConfig

SPATIAL_MULTIPLE = 32


class InputShapeError(ValueError):
    """An input tensor does not have the geometry a network accepts."""


def check_mrod_input(shape: tuple[int, ...] | torch.Size, frames: int, inplane_pool: int = 1) -> None:
    """Reject shapes the encoder cannot take, with the rule in the message (``inplane_pool``: the fine path's
    pooling before the encoder, which multiplies the rule)."""
    if len(shape) != 5:
        raise InputShapeError(f"MROD-Net expects [N, T, D, H, W], got {len(shape)} dimensions {tuple(shape)}")
    n, t, d, h, w = (int(s) for s in shape)
    if t != frames:
        raise InputShapeError(f"MROD-Net was built for T={frames} frames, got T={t}")
    if n < 1 or d < 1:
        raise InputShapeError(f"batch and slice counts must be >= 1, got N={n}, D={d}")
    multiple = SPATIAL_MULTIPLE * inplane_pool
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise InputShapeError(
            f"H and W must be positive multiples of {multiple} (the encoder's total stride), "
            f"got H={h}, W={w}; pad or resample the in-plane grid"
        )


def _conv_bn_act(cin: int, cout: int, kernel: tuple[int, int, int], stride=(1, 1, 1), groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    layers: list[nn.Module] = [
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm3d(cout),
    ]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel re-weighting from the global average (Hu et al.); ratio relative to the block input."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(channels, squeezed, 1)
        self.expand = nn.Conv3d(squeezed, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv3d(nn.Module):
    """Mobile inverted bottleneck in 3D: expand 1x1x1, depthwise kxkxk, SE, project 1x1x1."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int,
                 se_ratio: float, drop_connect: float) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = _conv_bn_act(cin, mid, (1, 1, 1)) if expansion != 1 else nn.Identity()
        self.depthwise = _conv_bn_act(mid, mid, (kernel,) * 3, stride=(1, stride, stride), groups=mid)
        self.se = SqueezeExcite(mid, max(1, int(cin * se_ratio)))
        self.project = _conv_bn_act(mid, cout, (1, 1, 1), act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def _stochastic_depth(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_connect <= 0.0:
            return x
        keep = 1.0 - self.drop_connect
        mask = torch.rand((x.shape[0], 1, 1, 1, 1), dtype=x.dtype, device=x.device) < keep
        return x * mask.to(x.dtype) / keep

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        if self.residual:
            return x + self._stochastic_depth(y)
        return y


class ASPP3d(nn.Module):
    """Atrous spatial pyramid pooling; dilation acts in-plane because D is short."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_act(cin, cout, (1, 1, 1), act=True)])
        for r in rates:
            self.branches.append(
                nn.Sequential(
                    nn.Conv3d(cin, cout, 3, padding=(1, r, r), dilation=(1, r, r), bias=False),
                    nn.BatchNorm3d(cout),
                    nn.SiLU(),
                )
            )
        # Image pooling: no batch norm on a 1x1x1 map (it would see one value per channel).
        self.pool_conv = nn.Sequential(nn.Conv3d(cin, cout, 1), nn.SiLU())
        self.fuse = _conv_bn_act(cout * (len(rates) + 2), cout, (1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        feats = [b(x) for b in self.branches]
        pooled = self.pool_conv(x.mean(dim=(2, 3, 4), keepdim=True))
        feats.append(pooled.expand_as(feats[0]))
        return self.fuse(torch.cat(feats, dim=1))


class ResidualLayer3d(nn.Module):
    """3x1x1, 3x3x3, 3x1x1 convolutions with an identity shortcut (3D-MDRNN's residual layer)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_act(channels, channels, (3, 1, 1)),
            _conv_bn_act(channels, channels, (3, 3, 3)),
            _conv_bn_act(channels, channels, (3, 1, 1), act=False),
        )
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class DecoderStage(nn.Module):
    """Double H and W with a 3x2x2 transposed convolution, merge the skip, refine residually."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, (3, 2, 2), stride=(1, 2, 2), padding=(1, 0, 0))
        self.merge = _conv_bn_act(cout + skip, cout, (1, 1, 1))
        self.residual = ResidualLayer3d(cout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.residual(self.merge(torch.cat([self.up(x), skip], dim=1)))


def sid_bin_edges(bins: int = 5, alpha: float = 0.0, beta: float = 1.0, eps: float = 1e-3) -> Tensor:
    """Spacing-increasing discretization of [alpha, beta] (SPEC section 2): K+1 edges."""
    a, b = alpha + eps, beta + eps
    i = torch.arange(bins + 1, dtype=torch.float64)
    return torch.exp(math.log(a) + math.log(b / a) * i / bins).to(torch.float32)


class MRODNet(nn.Module):
    """3D-MROD-Net. ``forward`` returns the regression maps; ``forward_train`` adds the ordinal logits."""

    def __init__(self, config: MRODConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.stem = _conv_bn_act(cfg.frames, cfg.stem_channels, (3, 3, 3), stride=(1, 2, 2))
        total_blocks = sum(cfg.stage_repeats)
        stages: list[nn.Sequential] = []
        cin, block_index = cfg.stem_channels, 0
        for exp, k, s, reps, cout in zip(cfg.stage_expansion, cfg.stage_kernels, cfg.stage_strides,
                                          cfg.stage_repeats, cfg.stage_channels, strict=True):
            blocks = []
            for r in range(reps):
                rate = cfg.drop_connect * block_index / total_blocks
                blocks.append(MBConv3d(cin, cout, exp, k, s if r == 0 else 1, cfg.se_ratio, rate))
                cin, block_index = cout, block_index + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        # Skips at strides 2, 4, 8, 16: the last stage before each further reduction.
        strides = [2]
        for s in cfg.stage_strides:
            strides.append(strides[-1] * s)
        self.skip_stages = [max(i for i in range(7) if strides[i + 1] == st) for st in (16, 8, 4, 2)]
        self.aspp = ASPP3d(cfg.stage_channels[-1], cfg.aspp_channels, cfg.aspp_rates)
        dec: list[DecoderStage] = []
        cin = cfg.aspp_channels
        for stage_idx, cout in zip(self.skip_stages, cfg.decoder_channels, strict=True):
            dec.append(DecoderStage(cin, cfg.stage_channels[stage_idx], cout))
            cin = cout
        self.decoder = nn.ModuleList(dec)
        self.final_up = nn.Sequential(
            nn.ConvTranspose3d(cin, cin, (3, 2, 2), stride=(1, 2, 2), padding=(1, 0, 0)),
            nn.BatchNorm3d(cin),
            nn.SiLU(),
        )
        self.regression_head = nn.Conv3d(cin, cfg.phases, 1)
        self.ordinal_head = nn.Conv3d(cin, cfg.phases * cfg.ordinal_bins, 1)
        self.fine = FineHead(cfg.frames, cin, cfg.fine_channels, cfg.phases) if cfg.fine_channels else None

    def _features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        skips: dict[int, Tensor] = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            skips[i] = x
        x = self.aspp(x)
        for stage_idx, block in zip(self.skip_stages, self.decoder, strict=True):
            x = block(x, skips[stage_idx])
        return self.final_up(x)

    def _maps_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh maps at the input's resolution and the features the ordinal head reads."""
        if self.fine is None:
            f = self._features(x)
            return self.regression_head(f), f
        f, coarse = self.coarse(x)
        up_f = to_grid_of(f, x)
        return self.fine(x, up_f, to_grid_of(coarse, x)), up_f

    def coarse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A fine network's coarse path: features and pre-tanh maps on the ``coarse_scale`` grid."""
        small = F.interpolate(x, scale_factor=tuple(self.config.coarse_scale), mode="trilinear",
                              align_corners=False)
        f = self._features(small)
        return f, self.regression_head(f)

    def forward(self, x: Tensor) -> Tensor:
        maps = torch.tanh(self._maps_and_features(x)[0])
        if not self.config.mirror_average:
            return maps
        # W is the input's x axis (left-right after preprocessing's reorientation to RAS).
        mirrored = torch.tanh(self._maps_and_features(torch.flip(x, dims=[-1]))[0])
        return 0.5 * (maps + torch.flip(mirrored, dims=[-1]))

    def forward_train(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Regression maps and ordinal logits ``[N, phases, K, D, H, W]`` (softmax over K in the loss)."""
        maps, f = self._maps_and_features(x)
        logits = self.ordinal_head(f)  # on the upsampled features: equal to upsampling the coarse logits
        n, _, d, h, w = logits.shape
        logits = logits.reshape(n, self.config.phases, self.config.ordinal_bins, d, h, w)
        return torch.tanh(maps), logits


def to_grid(x: Tensor, size: tuple[int, int, int]) -> Tensor:
    """``x`` resampled linearly onto a D, H, W grid, as the fine network does it (training crops use it too)."""
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def to_grid_of(x: Tensor, like: Tensor) -> Tensor:
    """``x`` resampled linearly onto ``like``'s D, H and W (an ONNX Resize to a shape read at run time)."""
    return to_grid(x, like.shape[2:])


class FineHead(nn.Module):
    """Full-resolution correction of the coarse maps from each voxel's own curve (see the module docstring)."""

    def __init__(self, frames: int, coarse_channels: int, channels: int, phases: int) -> None:
        super().__init__()
        self.project = _conv_bn_act(frames, channels, (1, 1, 1))
        self.merge = _conv_bn_act(channels + coarse_channels + phases, channels, (1, 3, 3))
        self.residual = ResidualLayer3d(channels)
        self.out = nn.Conv3d(channels, phases, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, coarse_features: Tensor, coarse_maps: Tensor) -> Tensor:
        """``coarse_*`` already upsampled to ``x``'s grid; training passes in-plane crops of all three."""
        merged = self.merge(torch.cat([self.project(x), coarse_features, coarse_maps], dim=1))
        return coarse_maps + self.out(self.residual(merged))

"""Attention-gated 3D U-Net for the hypoperfusion lesion (SPEC section 3).

Inputs: ``image [N, 4, 16, H, W]`` (DWI/mean, ADC/mean, ADC-core mask, side mask on a
16-slice slab) and ``nihss [N, 1]`` (already divided by 21). Four 2x2x2 poolings take
the 16 slices to 1, so H and W must be multiples of 16. Each level has three 3x3x3
convolutions with batch norm, the first one's output added back after the third
(the public code's residual addition). The NIHSS value is broadcast to the bottleneck's
shape and concatenated as one extra feature channel before the decoder. Every skip
passes an attention gate driven by the decoder features at the same resolution.
Output: lesion probability ``[N, 1, 16, H, W]`` after a sigmoid.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..presets import HypoConfig
from .mrod import InputShapeError

UNET_SPATIAL_MULTIPLE = 16


def check_hypo_input(image_shape: tuple[int, ...] | torch.Size, nihss_shape: tuple[int, ...] | torch.Size,
                     in_channels: int = 4, slab: int = 16) -> None:
    """Reject shapes the U-Net cannot take, naming the expected layout."""
    if len(image_shape) != 5:
        raise InputShapeError(f"U-Net image must be [N, {in_channels}, {slab}, H, W], got {tuple(image_shape)}")
    n, c, d, h, w = (int(s) for s in image_shape)
    if c != in_channels or d != slab:
        raise InputShapeError(f"U-Net image must have {in_channels} channels and {slab} slices, got C={c}, D={d}")
    if h % UNET_SPATIAL_MULTIPLE or w % UNET_SPATIAL_MULTIPLE or h == 0 or w == 0:
        raise InputShapeError(f"U-Net H and W must be positive multiples of {UNET_SPATIAL_MULTIPLE}, got H={h}, W={w}")
    if tuple(int(s) for s in nihss_shape) != (n, 1):
        raise InputShapeError(f"nihss must be [N, 1] = [{n}, 1], got {tuple(nihss_shape)}")


class ResidualConvBlock(nn.Module):
    """``convs`` 3x3x3 conv + BN (+ReLU); the first conv's output is added before the last ReLU."""

    def __init__(self, cin: int, cout: int, convs: int) -> None:
        super().__init__()
        if convs < 2:
            raise ValueError("a residual block needs at least two convolutions")
        layers = []
        for i in range(convs):
            layers.append(nn.Sequential(nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
                                        nn.BatchNorm3d(cout)))
        self.convs = nn.ModuleList(layers)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        first = self.act(self.convs[0](x))
        y = first
        for conv in self.convs[1:-1]:
            y = self.act(conv(y))
        return self.act(self.convs[-1](y) + first)


class AttentionGate(nn.Module):
    """1x1x1 conv of gating signal and of skip, sum, ReLU, 1x1x1 conv, sigmoid, multiply the skip."""

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.theta = nn.Conv3d(skip_channels, inter_channels, 1, bias=False)
        self.phi = nn.Conv3d(gate_channels, inter_channels, 1)
        self.psi = nn.Conv3d(inter_channels, 1, 1)

    def forward(self, skip: Tensor, gate: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.psi(torch.relu(self.theta(skip) + self.phi(gate))))
        return skip * alpha


class DecoderLevel(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, convs: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        self.gate = AttentionGate(skip, cout, max(1, skip // 2))
        self.block = ResidualConvBlock(cout + skip, cout, convs)
        self.dropout = nn.Dropout3d(dropout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        return self.dropout(self.block(torch.cat([up, self.gate(skip, up)], dim=1)))


class HypoperfusionUNet(nn.Module):
    def __init__(self, config: HypoConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.levels + 1)]
        self.encoder = nn.ModuleList()
        cin = config.in_channels
        for w in widths[:-1]:
            self.encoder.append(ResidualConvBlock(cin, w, config.convs_per_level))
            cin = w
        self.pool = nn.MaxPool3d(2)
        self.bottleneck = ResidualConvBlock(cin, widths[-1], config.convs_per_level)
        self.bottleneck_dropout = nn.Dropout3d(config.dropout)
        self.decoder = nn.ModuleList()
        cin = widths[-1] + 1  # + the broadcast NIHSS channel
        for w in reversed(widths[:-1]):
            self.decoder.append(DecoderLevel(cin, w, w, config.convs_per_level, config.dropout))
            cin = w
        self.head = nn.Conv3d(cin, 1, 1)

    def forward(self, image: Tensor, nihss: Tensor) -> Tensor:
        skips = []
        x = image
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck_dropout(self.bottleneck(x))
        clinical = nihss.reshape(-1, 1, 1, 1, 1).to(x.dtype).expand(-1, 1, x.shape[2], x.shape[3], x.shape[4])
        x = torch.cat([x, clinical], dim=1)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = level(x, skip)
        return torch.sigmoid(self.head(x))

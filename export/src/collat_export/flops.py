"""Count the arithmetic of a forward pass, so efficiency can be stated as achieved GFLOP/s.

Convolutions are where these networks spend their time; batch norm, activations and
the attention multiplications are below 1 % and are not counted. One multiply-add is
two FLOPs, the convention of the roofline literature and of ``perf_analyzer`` reports.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _conv_macs(module: nn.Conv3d, output: torch.Tensor) -> int:
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def _deconv_macs(module: nn.ConvTranspose3d, inputs: torch.Tensor) -> int:
    per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
    return inputs.numel() * per_input


def count_flops(network: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``inputs`` (2 x multiply-adds of every convolution)."""
    total = 0

    def on_conv(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output)  # type: ignore[arg-type]

    def on_deconv(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _deconv_macs(module, args[0])  # type: ignore[arg-type]

    handles = []
    for m in network.modules():
        if isinstance(m, nn.Conv3d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.ConvTranspose3d):
            handles.append(m.register_forward_hook(on_deconv))
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(*inputs)
    finally:
        for h in handles:
            h.remove()
        network.train(was_training)
    return 2 * total


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())

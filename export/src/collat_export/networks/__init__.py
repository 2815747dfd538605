"""The two networks and a factory that builds either from a preset."""

from __future__ import annotations

from torch import nn

from ..presets import HypoConfig, MRODConfig, Preset
from .hypo import HypoperfusionUNet, check_hypo_input
from .mrod import InputShapeError, MRODNet, check_mrod_input, sid_bin_edges

__all__ = [
    "HypoperfusionUNet",
    "InputShapeError",
    "MRODNet",
    "build_network",
    "check_hypo_input",
    "check_mrod_input",
    "sid_bin_edges",
]


def build_network(preset: Preset) -> nn.Module:
    if isinstance(preset.config, MRODConfig):
        return MRODNet(preset.config)
    if isinstance(preset.config, HypoConfig):
        return HypoperfusionUNet(preset.config)
    raise TypeError(f"no network for config {type(preset.config).__name__}")

"""Architecture presets and input geometry for both networks.

``full`` reproduces the sizes the studies describe (EfficientNet-B0 widths for
3D-MROD-Net, 32 base channels for the U-Net). ``tiny`` keeps every layer and every
connection of the same topology but narrows the channels, so that CPU-only machines
(CI, the demo, the phantom-trained demo weights) run the real graph quickly.

The geometry travels with each checkpoint: it is what the preprocessing must produce
and what the exported models declare to Triton.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

ModelKind = Literal["mrod", "hypo"]
PresetName = Literal["full", "tiny", "fine"]
MODEL_KINDS: tuple[str, ...] = ("mrod", "hypo")
PRESET_NAMES: tuple[str, ...] = ("full", "tiny", "fine")

# EfficientNet-B0 stage table (Tan & Le 2019): expansion, kernel, stride, repeats, width.
B0_EXPANSION = (1, 6, 6, 6, 6, 6, 6)
B0_KERNELS = (3, 3, 5, 3, 5, 5, 3)
B0_STRIDES = (1, 2, 2, 2, 1, 2, 1)
B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
B0_WIDTHS = (16, 24, 40, 80, 112, 192, 320)
B0_STEM = 32


@dataclass(frozen=True)
class MRODConfig:
    """3D-MROD-Net hyper-parameters; strides act on height and width only (SPEC section 2)."""

    frames: int = 60
    stem_channels: int = B0_STEM
    stage_channels: tuple[int, ...] = B0_WIDTHS
    stage_expansion: tuple[int, ...] = B0_EXPANSION
    stage_kernels: tuple[int, ...] = B0_KERNELS
    stage_strides: tuple[int, ...] = B0_STRIDES
    stage_repeats: tuple[int, ...] = B0_REPEATS
    se_ratio: float = 0.25
    drop_connect: float = 0.2
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (2, 4, 6)
    decoder_channels: tuple[int, ...] = (128, 64, 48, 32)
    phases: int = 5
    ordinal_bins: int = 5
    fine_channels: int = 0  # > 0: a full-resolution head beside a coarse encoder-decoder (networks.mrod)
    coarse_scale: tuple[float, ...] = (0.6, 0.5, 0.5)  # fine path: the coarse grid / the input grid (D, H, W)
    # The maps averaged with those of the left-right mirrored series, mirrored back (twice the compute): the
    # network is trained on strokes of either side, and the average keeps the anatomy while halving what is
    # noise-driven in each pass (what it gained: docs/training.md, "The fine preset").
    mirror_average: bool = False


@dataclass(frozen=True)
class HypoConfig:
    """Attention-gated 3D U-Net hyper-parameters (SPEC section 3, public Keras defaults)."""

    in_channels: int = 4
    base_channels: int = 32
    levels: int = 4  # number of poolings
    convs_per_level: int = 3
    dropout: float = 0.25
    nihss_scale: float = 21.0


@dataclass(frozen=True)
class Geometry:
    """The grid a network is fed: what preprocessing produces for it.

    For ``mrod``: ``frames`` x ``slices`` x ``height`` x ``width`` with ``frame_seconds``
    between frames (time is the channel axis). For ``hypo``: slabs of ``slices`` (16)
    taken from a ``volume_slices``-slice whole-brain volume with ``slab_stride``.
    """

    channels: int
    slices: int
    height: int
    width: int
    frame_seconds: float | None = None
    volume_slices: int | None = None
    slab_stride: int | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Preset:
    model: str
    name: str
    config: MRODConfig | HypoConfig
    geometry: Geometry
    notes: str = field(default="")

    def describe(self) -> dict:
        return {
            "model": self.model,
            "preset": self.name,
            "config": asdict(self.config),
            "geometry": self.geometry.as_dict(),
        }


def _narrow(width: int, factor: float, floor: int = 8) -> int:
    """Scale a channel width and round to a multiple of 8, as EfficientNet does."""
    return max(floor, int(round(width * factor / 8.0)) * 8)


_TINY_FACTOR = 0.25
_TINY_MROD = MRODConfig(
    stem_channels=_narrow(B0_STEM, _TINY_FACTOR),
    stage_channels=tuple(_narrow(c, _TINY_FACTOR) for c in B0_WIDTHS),
    aspp_channels=32,
    decoder_channels=(32, 24, 16, 16),
)

PRESETS: dict[tuple[str, str], Preset] = {
    ("mrod", "full"): Preset(
        "mrod",
        "full",
        MRODConfig(),
        Geometry(channels=60, slices=20, height=128, width=128, frame_seconds=1.6),
        "EfficientNet-B0 widths; DCE-MRA grid (60 dynamics at 1.6 s, 128x128 in-plane).",
    ),
    ("mrod", "tiny"): Preset(
        "mrod",
        "tiny",
        _TINY_MROD,
        Geometry(channels=60, slices=12, height=64, width=64, frame_seconds=1.6),
        "B0 topology at a quarter of the widths; 64x64 in-plane grid for CPU demos.",
    ),
    ("mrod", "fine"): Preset(
        "mrod",
        "fine",
        replace(_TINY_MROD, fine_channels=16, mirror_average=True),
        Geometry(channels=60, slices=20, height=128, width=128, frame_seconds=1.6),
        "The tiny network as the coarse path (on 64x64x12) plus a full-resolution head: maps on 128x128x20.",
    ),
    ("hypo", "full"): Preset(
        "hypo",
        "full",
        HypoConfig(),
        Geometry(channels=4, slices=16, height=128, width=128, volume_slices=60, slab_stride=4),
        "32 base channels, 4 poolings; MNI 2 mm grid 91x109x60 padded to 128x128.",
    ),
    ("hypo", "tiny"): Preset(
        "hypo",
        "tiny",
        HypoConfig(base_channels=8),
        Geometry(channels=4, slices=16, height=128, width=128, volume_slices=60, slab_stride=4),
        "8 base channels, same topology and grid.",
    ),
}


def get_preset(model: str, name: str) -> Preset:
    try:
        return PRESETS[(model, name)]
    except KeyError:
        raise ValueError(
            f"unknown model/preset {model!r}/{name!r}; models: {', '.join(MODEL_KINDS)}; "
            f"presets: {', '.join(PRESET_NAMES)}"
        ) from None


def preset_from_dict(meta: dict) -> Preset:
    """Rebuild a preset from the description stored in a checkpoint.

    The stored config wins over the named preset, so a research group's checkpoint with
    widened channels still loads as long as its description says so.
    """
    base = get_preset(meta["model"], meta["preset"])
    cfg_cls = type(base.config)
    stored = dict(meta.get("config", {}))
    for key, value in stored.items():
        if isinstance(value, list):
            stored[key] = tuple(value)
    config = cfg_cls(**{**asdict(base.config), **stored})
    geometry = Geometry(**{**base.geometry.as_dict(), **meta.get("geometry", {})})
    return Preset(base.model, base.name, config, geometry, base.notes)

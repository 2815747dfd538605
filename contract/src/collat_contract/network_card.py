"""The network card: what the pipelines must know to feed a network someone else trained, and to read it.

A card is a small mapping (YAML or JSON beside the network file) that names the network's tensors, their layout
(letters N batch, C channels or frames, D slices, H rows, W columns), which channels it takes, how its NIHSS input
is scaled and what activation its output already has. :func:`parse_card` checks one against these rules and says
what is wrong in one line naming the key, so that a bad card is refused before anything is built from it.
Documented, with a worked card per role, in ``docs/network-card.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

from .names import PHASE_NAMES

CARD_VERSION = 1
ROLES = ("collateral", "hypoperfusion")
DIFFUSION_CHANNELS = ("dwi", "adc", "core", "side")  # what the diffusion step can feed, in its own order
ACTIVATIONS = ("none", "sigmoid", "tanh", "softmax")
LAYOUTS_3D = frozenset("N" + "".join(p) for p in permutations("CDHW"))
LAYOUTS_2D = frozenset(("NCHW", "NHWC"))
INTENDED_USES = ("research", "clinical")
MODALITIES = ("dce", "dsc")
NETWORK_SUFFIXES = (".onnx", ".pt", ".pth", ".ts", ".torchscript")  # ONNX or TorchScript
PERFUSION_RANGE = (-0.9, 0.9)  # what the perfusion step feeds 3D-MROD-Net inside the brain
PHASES_RANGE = (-1.0, 1.0)  # what the collateral step reads


class CardError(ValueError):
    """A card that cannot be used; the message names the key and the rule."""


@dataclass(frozen=True)
class TensorRef:
    """One of the network's tensors as the card describes it."""

    name: str
    layout: str = ""
    channels: tuple[str, ...] = ()  # image input: which diffusion channels, in the network's order
    scale: float = 1.0  # nihss input: value fed = NIHSS / scale
    activation: str = "none"  # output: what the network already applied
    channel: int = -1  # softmax / multi-channel lesion output: the lesion's channel
    value_range: tuple[float, float] | None = None  # series input: what it expects; phases output: what it gives
    order: tuple[str, ...] = PHASE_NAMES  # phases output: the channels' phases

    @property
    def is_2d(self) -> bool:
        return "D" not in self.layout


@dataclass(frozen=True)
class NetworkCard:
    role: str
    network: str
    inputs: dict[str, TensorRef]
    outputs: dict[str, TensorRef]
    intended_use: str = "research"
    modalities: tuple[str, ...] = ()
    frames: int | None = None  # collateral: frames the network takes, at frame_seconds
    frame_seconds: float | None = None
    slices: int | None = None  # collateral: slices of the grid the series is resampled to (when the graph is free)
    inplane: tuple[int, int] | None = None  # rows, columns (when the graph leaves them free)
    context_slices: int = 1  # a 2D network: neighbouring slices fed as channels (odd)
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_2d(self) -> bool:
        return next(iter(self.inputs.values())).is_2d

    @property
    def research_only(self) -> bool:
        return self.intended_use != "clinical"


def _fail(key: str, rule: str) -> CardError:
    return CardError(f"{key}: {rule}")


def _mapping(data: Any, key: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(key, f"must be a mapping, got {type(data).__name__}")
    return data


def _string(data: dict[str, Any], key: str, where: str, choices: tuple[str, ...] = ()) -> str:
    if key not in data:
        raise _fail(f"{where}{key}", "missing")
    value = data[key]
    if not isinstance(value, str) or not value:
        raise _fail(f"{where}{key}", f"must be a non-empty string, got {value!r}")
    if choices and value not in choices:
        raise _fail(f"{where}{key}", f"{value!r} is not one of {', '.join(choices)}")
    return value


def _number(value: Any, key: str, *, positive: bool = True, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise _fail(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if positive and value <= 0:
        raise _fail(key, f"must be positive, got {value!r}")
    return value


def _range(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(key, f"must be [low, high], got {value!r}")
    low, high = (_number(v, key, positive=False) for v in value)
    if not low < high:
        raise _fail(key, f"low must be below high, got {value!r}")
    return float(low), float(high)


def _layout(ref: dict[str, Any], where: str) -> str:
    layout = _string(ref, "layout", where)
    if layout not in LAYOUTS_3D | LAYOUTS_2D:
        raise _fail(f"{where}layout", f"{layout!r} is not a layout: N first, then C, D, H, W in any order (3D), or "
                                      "NCHW / NHWC (2D, run slice by slice)")
    return layout


def _tensor(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    if key not in data:
        raise _fail(f"{where}{key}", "missing")
    ref = _mapping(data[key], f"{where}{key}")
    _string(ref, "name", f"{where}{key}.")
    return ref


def _hypoperfusion(card: dict[str, Any], inputs: dict[str, Any], outputs: dict[str, Any]
                   ) -> tuple[dict[str, TensorRef], dict[str, TensorRef]]:
    image = _tensor(inputs, "image", "inputs.")
    channels = image.get("channels")
    if not isinstance(channels, list) or not channels or any(c not in DIFFUSION_CHANNELS for c in channels) \
            or len(set(channels)) != len(channels):
        raise _fail("inputs.image.channels", f"must list distinct channels among {', '.join(DIFFUSION_CHANNELS)}, "
                                             f"got {channels!r}")
    refs = {"image": TensorRef(image["name"], _layout(image, "inputs.image."), channels=tuple(channels))}
    if "nihss" in inputs:
        nihss = _tensor(inputs, "nihss", "inputs.")
        refs["nihss"] = TensorRef(nihss["name"], scale=float(_number(nihss.get("scale", 1), "inputs.nihss.scale")))
    lesion = _tensor(outputs, "lesion", "outputs.")
    activation = lesion.get("activation", "none")
    if activation not in ACTIVATIONS:
        raise _fail("outputs.lesion.activation", f"{activation!r} is not one of {', '.join(ACTIVATIONS)}")
    channel = lesion.get("channel", -1)
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise _fail("outputs.lesion.channel", f"must be an integer, got {channel!r}")
    layout = _layout(lesion, "outputs.lesion.")
    if ("D" in layout) != (not refs["image"].is_2d):
        raise _fail("outputs.lesion.layout", f"{layout} and the image's {refs['image'].layout} must both be 2D or 3D")
    return refs, {"lesion": TensorRef(lesion["name"], layout, activation=activation, channel=channel)}


def _collateral(card: dict[str, Any], inputs: dict[str, Any], outputs: dict[str, Any]
                ) -> tuple[dict[str, TensorRef], dict[str, TensorRef]]:
    series = _tensor(inputs, "series", "inputs.")
    series_range = _range(series.get("range", list(PERFUSION_RANGE)), "inputs.series.range")
    refs = {"series": TensorRef(series["name"], _layout(series, "inputs.series."), value_range=series_range)}
    phases = _tensor(outputs, "phases", "outputs.")
    activation = phases.get("activation", "none")
    if activation not in ("none", "sigmoid", "tanh"):
        raise _fail("outputs.phases.activation", f"{activation!r} is not one of none, sigmoid, tanh")
    implied = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(activation)
    phases_range = _range(phases["range"], "outputs.phases.range") if "range" in phases else implied
    if phases_range is None:
        raise _fail("outputs.phases.range", "missing: with activation none, say what range the maps come in")
    order = phases.get("order", list(PHASE_NAMES))
    if not isinstance(order, list) or sorted(order) != sorted(PHASE_NAMES):
        raise _fail("outputs.phases.order", f"must list the five phases {', '.join(PHASE_NAMES)} once each, "
                                            f"got {order!r}")
    layout = _layout(phases, "outputs.phases.")
    if ("D" in layout) != (not refs["series"].is_2d):
        raise _fail("outputs.phases.layout", f"{layout} and the series' {refs['series'].layout} must both be 2D or 3D")
    return refs, {"phases": TensorRef(phases["name"], layout, activation=activation, value_range=phases_range,
                                      order=tuple(order))}


def parse_card(data: Any) -> NetworkCard:
    """A checked :class:`NetworkCard` from the card's mapping; :class:`CardError` names the first problem."""
    card = _mapping(data, "card")
    version = card.get("card_version")
    if version != CARD_VERSION:
        raise _fail("card_version", f"must be {CARD_VERSION}, got {version!r}")
    role = _string(card, "role", "", ROLES)
    network = _string(card, "network", "")
    if not network.lower().endswith(NETWORK_SUFFIXES):
        raise _fail("network", f"{network!r} is neither ONNX (.onnx) nor TorchScript ("
                               f"{', '.join(NETWORK_SUFFIXES[1:])})")
    inputs = _mapping(card.get("inputs"), "inputs")
    outputs = _mapping(card.get("outputs"), "outputs")
    refs, outs = (_collateral if role == "collateral" else _hypoperfusion)(card, inputs, outputs)
    use = card.get("intended_use", "research")
    if use not in INTENDED_USES:
        raise _fail("intended_use", f"{use!r} is not one of {', '.join(INTENDED_USES)}")
    fields: dict[str, Any] = {}
    if role == "collateral":
        modalities = card.get("modalities")
        if not isinstance(modalities, list) or not modalities or any(m not in MODALITIES for m in modalities):
            raise _fail("modalities", f"must list what the network was trained on among {', '.join(MODALITIES)}, "
                                      f"got {modalities!r}")
        fields["modalities"] = tuple(modalities)
        for key in ("frames", "frame_seconds"):
            if key not in card:
                raise _fail(key, "missing: the perfusion step resamples time to it")
        fields["frames"] = int(_number(card["frames"], "frames", integer=True))
        fields["frame_seconds"] = float(_number(card["frame_seconds"], "frame_seconds"))
        if "slices" in card:
            fields["slices"] = int(_number(card["slices"], "slices", integer=True))
    if "inplane" in card:
        size = card["inplane"]
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise _fail("inplane", f"must be [rows, columns], got {size!r}")
        fields["inplane"] = tuple(int(_number(v, "inplane", integer=True)) for v in size)
    context = card.get("context_slices", 1)
    if isinstance(context, bool) or not isinstance(context, int) or context < 1 or context % 2 == 0:
        raise _fail("context_slices", f"must be an odd number of slices >= 1, got {context!r}")
    if context > 1 and not next(iter(refs.values())).is_2d:
        raise _fail("context_slices", "neighbouring slices as channels are for 2D layouts (NCHW, NHWC)")
    known = {"card_version", "role", "network", "inputs", "outputs", "intended_use", "modalities", "frames",
             "frame_seconds", "slices", "inplane", "context_slices", "name"}
    return NetworkCard(role=role, network=network, inputs=refs, outputs=outs, intended_use=use,
                       context_slices=context, name=str(card.get("name", "")),
                       extra={k: v for k, v in card.items() if k not in known}, **fields)

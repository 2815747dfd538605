"""Self-describing checkpoints: weights plus the preset and geometry they were trained for.

A checkpoint is a ``torch.save`` dict::

    {"format": "collat-checkpoint/1", "model": "mrod", "preset": "tiny",
     "config": {...}, "geometry": {...}, "training": {...}, "state_dict": {...}}

Research groups often hold a bare ``state_dict`` (or ``{"state_dict": ...}`` as
Lightning writes it); those load too when the caller names the model and preset.
Keys must match exactly: a silently half-loaded network would serve plausible-looking
noise, so a mismatch is an error that lists the missing and unexpected keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .networks import build_network
from .presets import Preset, get_preset, preset_from_dict

CHECKPOINT_FORMAT = "collat-checkpoint/1"
_MAX_KEYS_SHOWN = 8


class CheckpointError(ValueError):
    """The checkpoint cannot be read or does not fit the network."""


@dataclass
class LoadedCheckpoint:
    preset: Preset
    network: nn.Module
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(path: str | Path, network: nn.Module, preset: Preset,
                    training: dict[str, Any] | None = None, *, fp16: bool = False) -> Path:
    """Write weights with their description; written to a temporary name first, then renamed.

    ``fp16`` stores floating-point tensors in half precision (half the bytes; used for the
    demo weights shipped in the repository). Loading casts them back to the network's dtype.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        **preset.describe(),
        "training": dict(training or {}),
        "stored_dtype": "float16" if fp16 else "float32",
        "state_dict": state,
    }
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that DataParallel/DDP training leaves on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _summarize(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def load_state_strict(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load with exact key and shape matching; the error names what differs."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarize(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarize(unexpected)}")
        raise CheckpointError(f"{source}: weights do not match the network; " + "; ".join(parts))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"{source}: tensor shapes do not match the preset: {_summarize(wrong)}")
    network.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, *, model: str | None = None, preset: str | None = None) -> LoadedCheckpoint:
    """Build the network a checkpoint describes and load its weights strictly.

    ``model``/``preset`` are required for a bare state_dict and, when given for a
    self-describing checkpoint, must agree with what it says about itself.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(payload).__name__}")

    if "state_dict" in payload and isinstance(payload["state_dict"], dict):
        state = payload["state_dict"]
        meta = payload if "model" in payload and "preset" in payload else None
    else:
        state, meta = payload, None

    if meta is not None:
        for name, given, stored in (("model", model, meta["model"]), ("preset", preset, meta["preset"])):
            if given is not None and given != stored:
                raise CheckpointError(f"{path}: checkpoint is {name} {stored!r}, but {given!r} was requested")
        resolved = preset_from_dict(meta)
        training = dict(meta.get("training", {}))
    else:
        if model is None or preset is None:
            raise CheckpointError(f"{path}: a bare state_dict does not say which network it is; "
                                  "pass --model and --preset")
        resolved, training = get_preset(model, preset), {}

    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: state_dict holds values that are not tensors")
    network = build_network(resolved)
    load_state_strict(network, _strip_prefix(dict(state)), str(path))
    network.eval()
    return LoadedCheckpoint(resolved, network, training, path)


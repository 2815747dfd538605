"""A state dict trained in another code base on this project's architectures, loaded through an explicit name map.

Other code bases name the same layers otherwise (``backbone.`` for ``encoder.``, ``model.`` prefixes, ...). The name
map says how, as ordered regular-expression rules applied to each of their names (``re.sub``), with an ``ignore``
list for tensors that have no counterpart here (an auxiliary training head, a loss buffer)::

    rename:
      "^model\\.": ""
      "^backbone\\.": "encoder."
    ignore: ["^aux_head\\."]

Every tensor must land on exactly one of ours with the same shape, and every one of ours must be filled: anything
else is refused with every offending name listed, never a partial load that would serve plausible noise.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, LoadedCheckpoint
from ..networks import build_network
from ..presets import get_preset


def read_name_map(path: Path) -> tuple[list[tuple[re.Pattern[str], str]], list[re.Pattern[str]]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path}: not YAML or JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rename", {}), dict) \
            or not isinstance(data.get("ignore", []), list) or set(data) - {"rename", "ignore"}:
        raise CheckpointError(f"{path}: a name map is a mapping with 'rename' (pattern: replacement) and 'ignore' "
                              "(a list of patterns)")
    try:
        rules = [(re.compile(str(k)), str(v)) for k, v in (data.get("rename") or {}).items()]
        ignore = [re.compile(str(p)) for p in data.get("ignore") or []]
    except re.error as exc:
        raise CheckpointError(f"{path}: not a regular expression: {exc.pattern!r} ({exc})") from None
    return rules, ignore


def mapped_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], name_map: Path,
                 source: Path) -> dict[str, torch.Tensor]:
    """Their tensors under our names; :class:`CheckpointError` lists every tensor that does not fit."""
    rules, ignore = read_name_map(name_map)
    out: dict[str, torch.Tensor] = {}
    came_from: dict[str, str] = {}
    problems: list[str] = []
    for theirs, tensor in state.items():
        if any(p.search(theirs) for p in ignore):
            continue
        ours = theirs
        for pattern, replacement in rules:
            ours = pattern.sub(replacement, ours)
        if ours in came_from:
            problems.append(f"{theirs} and {came_from[ours]} both map to {ours}")
        elif ours not in expected:
            problems.append(f"{theirs} -> {ours}: no such tensor here")
        elif tuple(tensor.shape) != tuple(expected[ours].shape):
            problems.append(f"{theirs} -> {ours}: shape {tuple(tensor.shape)} != {tuple(expected[ours].shape)}")
        came_from[ours] = theirs
        out[ours] = tensor
    problems += [f"{ours}: nothing maps to it" for ours in expected if ours not in came_from]
    if problems:
        raise CheckpointError(f"{source} with {name_map.name}: {len(problems)} tensor(s) do not fit, nothing loaded: "
                              + "; ".join(problems))
    return out


def load_mapped(state_dict: Path, name_map: Path, model: str, preset: str) -> LoadedCheckpoint:
    """The preset's network with the mapped weights, loaded strictly."""
    try:
        payload = torch.load(state_dict, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{state_dict}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises several unrelated types for a corrupt file
        raise CheckpointError(f"{state_dict}: not a readable PyTorch state dict ({type(exc).__name__})") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{state_dict}: not a state dict (a mapping of names to tensors)")
    resolved = get_preset(model, preset)
    network = build_network(resolved)
    network.load_state_dict(mapped_state(state, network.state_dict(), name_map, state_dict), strict=True)
    return LoadedCheckpoint(resolved, network.eval(), {}, state_dict)

"""An imported network as a new version of a served one, beside the earlier versions, and the policy that picks
which of them the server loads (rolling back is pinning the policy to an earlier version)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from collat_contract import names
from collat_ensemble.server.model_versions import (
    available_versions,
    loaded_versions,
    served_version,
    with_parameters,
    with_policy,
)

from .network import ImportedNetwork

GRID_KEYS = ("channels", "slices", "height", "width", "frame_seconds")  # what preprocess_perfusion resamples to


def describe(model_json: Path) -> str:
    """One version's provenance in a line: preset, weights digest and, for an imported network, its card's."""
    try:
        meta = json.loads(model_json.read_text())
    except (OSError, ValueError):
        return "no model.json"
    card = meta.get("card_sha256")
    preset = re.sub(r'[";\\\n]', "_", str(meta.get("preset", "?")))  # it travels in a config.pbtxt string
    return f"{preset} {str(meta.get('sha256', ''))[:12]}" + (f" card {card[:12]}" if card else "")


def _model_dir(repository: Path, name: str) -> Path:
    folder = repository / name
    if not (folder / "config.pbtxt").is_file() or not available_versions(folder):
        raise ValueError(f"{repository}: no {name} with a version in it (build the repository with "
                         "collat-export repository first)")
    return folder


def set_policy(repository: Path, name: str, policy: str) -> int:
    """Which of a network's versions the server loads; returns the one the pipelines then serve."""
    folder = _model_dir(repository, name)
    available = available_versions(folder)
    served = served_version(policy, available)
    config = folder / "config.pbtxt"
    config.write_text(with_policy(config.read_text(), policy))
    listed = "; ".join(f"{v}: {describe(folder / str(v) / 'model.json')}" for v in available)
    for step in names.CARD_READERS[name]:
        step_config = repository / step / "config.pbtxt"
        step_config.write_text(with_parameters(step_config.read_text(), {"network_version": str(served),
                                                                          "network_versions": listed}))
    write_pinned(repository, name, loaded_versions(policy, available))
    return served


def write_pinned(repository: Path, name: str, versions: list[int]) -> None:
    """For each loaded version, copies of the card-reading steps and of the pipelines that run the network, pinned
    to that version, so that a request can ask for it by name; copies for versions no longer loaded are removed
    (an ensemble whose version is not loaded would keep the whole server from becoming ready)."""
    marker = f"{names.PINNED_SEPARATOR}{name}_v"
    for stale in repository.iterdir():
        if marker in stale.name:
            shutil.rmtree(stale)
    if len(versions) < 2:
        return
    for version in versions:
        for step in names.CARD_READERS[name]:
            copy = repository / names.pinned(step, name, version)
            shutil.copytree(repository / step, copy, symlinks=True)
            text = (copy / "config.pbtxt").read_text().replace(f'name: "{step}"', f'name: "{copy.name}"', 1)
            (copy / "config.pbtxt").write_text(with_parameters(text, {"network_version": str(version)}))
        for pipeline in names.PIPELINES_OF_NETWORK[name]:
            text = (repository / pipeline / "config.pbtxt").read_text()
            text = text.replace(f'name: "{pipeline}"', f'name: "{names.pinned(pipeline, name, version)}"', 1)
            text = text.replace(f'model_name: "{name}"\n      model_version: -1',
                                f'model_name: "{name}"\n      model_version: {version}')
            for step in names.CARD_READERS[name]:
                text = text.replace(f'model_name: "{step}"', f'model_name: "{names.pinned(step, name, version)}"')
            folder = repository / names.pinned(pipeline, name, version)
            (folder / "1").mkdir(parents=True)
            (folder / "config.pbtxt").write_text(text)


def add_version(repository: Path, imported: ImportedNetwork, policy: str = "all") -> int:
    """Copy an imported network into the next version folder of its network; returns that version's number."""
    name = imported.io.triton_name
    folder = _model_dir(repository, name)
    available = available_versions(folder)
    newest = folder / str(max(available))
    if name == names.MROD_NET:  # one perfusion step resamples every series to one grid for every version
        try:
            served = json.loads((newest / "model.json").read_text()).get("geometry", {})
        except (OSError, ValueError):
            served = {}  # a configuration-only repository: no grid to match
        grid = imported.geometry.as_dict()
        differ = [k for k in GRID_KEYS if served.get(k) != grid.get(k)]
        if differ:
            raise ValueError(f"{imported.card.network}: its grid ({', '.join(f'{k} {grid.get(k)}' for k in differ)}) "
                             f"is not version {newest.name}'s ({', '.join(f'{k} {served.get(k)}' for k in differ)}): "
                             "a 3D-MROD-Net on another grid needs its own repository")
    version = max(available) + 1
    staging = folder / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for item in ("model.onnx", "model.json"):
        shutil.copyfile(imported.folder / item, staging / item)
    if (newest / "model.py").is_file():  # the python-onnx target's runner travels with every version
        shutil.copyfile(newest / "model.py", staging / "model.py")
    os.replace(staging, folder / str(version))
    set_policy(repository, name, policy)
    return version

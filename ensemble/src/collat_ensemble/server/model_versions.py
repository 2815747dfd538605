"""Several versions of one network side by side: Triton's version policy, and which version the pipelines serve.

A network's folder holds numbered versions (``1/``, ``2/``, ...); its ``config.pbtxt`` says which of them Triton loads
(``latest``: the newest only, Triton's default; ``all``; ``specific:1,3``). The ensembles call the newest loaded
version, so that version is what every result comes from; the Python steps that read a network's model card are told
which one by their ``network_version`` parameter, and list every version's provenance in ``network_versions`` for
``collat-client models``. Rolling back is setting the policy to the earlier version.
"""

from __future__ import annotations

import re
from pathlib import Path

from .pbtxt import parameters_block

POLICY_HELP = "latest (the newest version only), all, or specific:1,2 (those versions)"


def parse_policy(policy: str) -> tuple[str, tuple[int, ...]]:
    """``latest`` / ``all`` / ``specific:1,2`` -> (kind, versions); ValueError names the rule."""
    kind, _, listed = policy.partition(":")
    if kind in ("latest", "all") and not listed:
        return kind, ()
    if kind == "specific":
        try:
            versions = tuple(sorted({int(v) for v in listed.split(",") if v.strip()}))
        except ValueError:
            versions = ()
        if versions and min(versions) >= 1:
            return kind, versions
    raise ValueError(f"version policy {policy!r}: choose {POLICY_HELP}")


def policy_block(policy: str) -> str:
    """The ``version_policy`` of a network's config; empty for ``latest``, Triton's default."""
    kind, versions = parse_policy(policy)
    if kind == "latest":
        return ""
    if kind == "all":
        return "version_policy: { all { } }"
    return f"version_policy: {{ specific {{ versions: [ {', '.join(str(v) for v in versions)} ] }} }}"


def loaded_versions(policy: str, available: list[int]) -> list[int]:
    """The versions Triton loads under ``policy``; ValueError when it names one the folder lacks."""
    kind, versions = parse_policy(policy)
    loaded = [v for v in available if kind != "specific" or v in versions]
    missing = sorted(set(versions) - set(available))
    if missing or not loaded:
        raise ValueError(f"version policy {policy!r}: no version {', '.join(map(str, missing or versions))} here "
                         f"(the folder has {', '.join(map(str, available)) or 'none'})")
    return loaded[-1:] if kind == "latest" else loaded


def served_version(policy: str, available: list[int]) -> int:
    """The version the ensembles reach: the newest one the policy loads."""
    return max(loaded_versions(policy, available))


def available_versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()) \
        if model_dir.is_dir() else []


def with_policy(config: str, policy: str) -> str:
    """A network's config text with its version policy replaced."""
    stripped = re.sub(r"^version_policy: \{.*\}\n", "", config, flags=re.M)
    block = policy_block(policy)
    return stripped + (block + "\n" if block else "")


_PARAMETER = re.compile(r'key: "([^"]+)"\s*value: \{ string_value: "([^"]*)" \}')
_PARAMETERS = re.compile(r"^parameters \[\n.*?\n\]\n?", re.M | re.S)


def config_parameters(config: str) -> dict[str, str]:
    block = _PARAMETERS.search(config)
    return dict(_PARAMETER.findall(block.group(0))) if block else {}


def with_parameters(config: str, updates: dict[str, str]) -> str:
    """A step's config text with ``updates`` merged into its parameters (the block is written last)."""
    merged = {**config_parameters(config), **updates}
    return _PARAMETERS.sub("", config).rstrip("\n") + "\n" + parameters_block(merged) + "\n"

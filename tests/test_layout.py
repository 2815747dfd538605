"""Guards on the project's boundaries, read from the source itself.

* The server side (``collat_ensemble``, with the shared ``collat_contract``) imports with torch
  blocked, and no module of it names torch, the client or the export package anywhere, not
  even inside a function.
* The client names neither torch nor the server-side packages; the contract names nothing but
  the standard library.
* No import circle anywhere in the tree (function-local and TYPE_CHECKING imports count).
* The vocabulary and the rules the issues found written several times are defined once.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"collat_contract": ROOT / "contract" / "src", "collat_client": ROOT / "client" / "src",
           "collat_ensemble": ROOT / "ensemble" / "src", "collat_export": ROOT / "export" / "src",
           "benchmarks": ROOT}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def modules(package: str) -> dict[str, Path]:
    """Module name -> file, for every .py of a package."""
    base = SOURCES[package]
    found = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


ALL_MODULES = {name: path for package in SOURCES for name, path in modules(package).items()}


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Absolute names of everything a module imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in ALL_MODULES else base), node.lineno


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def forbidden_imports(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{shown(path)}:{line} imports {name}"
            for module, path in modules(package).items() for name, line in imported_names(module, path)
            if name.split(".")[0] in forbidden]


def test_the_server_side_imports_every_module_with_torch_blocked():
    code = (
        "import importlib, pkgutil, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import collat_contract, collat_ensemble\n"
        "names = []\n"
        "for package in (collat_contract, collat_ensemble):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "        names.append(info.name)\n"
        "print(len(names), sorted(m for m in ('torch', 'collat_client', 'collat_export') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    count, leaked = done.stdout.strip().split(" ", 1)
    assert int(count) == len(modules("collat_contract")) + len(modules("collat_ensemble")) - 2  # packages' roots
    assert leaked == "[]"


@pytest.mark.parametrize("package, forbidden", [
    ("collat_ensemble", ("torch", "collat_client", "collat_export")),
    ("collat_client", ("torch", "collat_ensemble", "collat_export")),
])
def test_no_forbidden_import_anywhere_in_the_source(package, forbidden):
    assert forbidden_imports(package, forbidden) == []


def test_the_contract_needs_nothing_but_the_standard_library():
    outside = [f"{shown(path)}:{line} imports {name}"
               for module, path in modules("collat_contract").items() for name, line in imported_names(module, path)
               if name.split(".")[0] not in STDLIB and name.split(".")[0] != "collat_contract"]
    assert outside == []


def test_the_forbidden_import_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The guard above would be worthless if a lazy ``import torch`` slipped past it."""
    package = tmp_path / "collat_ensemble"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "lazy.py").write_text("def f():\n    import torch\n    from collat_client import errors\n")
    monkeypatch.setitem(SOURCES, "collat_ensemble", tmp_path)
    assert [line.split(" imports ")[1] for line in forbidden_imports("collat_ensemble", ("torch", "collat_client"))] \
        == ["torch", "collat_client.errors"]


def import_graph() -> dict[str, set[str]]:
    return {module: {name for name, _ in imported_names(module, path) if name in ALL_MODULES and name != module}
            for module, path in ALL_MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_tree():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def definitions(name: str) -> list[str]:
    """Where ``name`` is bound at module level (an assignment, a class or a function), across the tree."""
    found = []
    for module, path in ALL_MODULES.items():
        for node in ast.parse(path.read_text()).body:
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            bound = [t.id for t in targets if isinstance(t, ast.Name)]
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                bound = [node.name]
            if name in bound:
                found.append(module)
    return found


@pytest.mark.parametrize("name, home", [
    ("TensorSpec", "collat_contract.tensors"), ("NetworkIO", "collat_contract.tensors"),
    ("PIPELINES", "collat_contract.tensors"), ("PHASE_NAMES", "collat_contract.names"),
    ("NETWORKS", "collat_contract.names"), ("PIPELINE_NAMES", "collat_contract.names"),
    ("SIDES", "collat_contract.clinical"), ("check_clinical", "collat_contract.clinical"),
    ("lesion_mask", "collat_ensemble.hypoperfusion"), ("assess_hypoperfusion", "collat_ensemble.hypoperfusion"),
    ("hemisphere", "collat_ensemble.preprocess"), ("LESION_PROBABILITY_THRESHOLD", "collat_ensemble.clinical"),
])
def test_each_rule_and_name_is_defined_once(name, home):
    assert definitions(name) == [home]


def test_only_the_lesion_rule_reads_the_lesion_threshold():
    readers = [module for module, path in ALL_MODULES.items()
               if "LESION_PROBABILITY_THRESHOLD" in path.read_text() and module != "collat_ensemble.clinical"]
    assert readers == ["collat_ensemble.hypoperfusion"]

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


# The client's layers, bottom up: a module may import its own layer and the ones below, never one above.
CLIENT_LAYERS = ("collat_client.errors collat_client.schema", "collat_client.imaging", "collat_client.dicom",
                 "collat_client.sdk", "collat_client.apps")


def client_layer(module: str) -> int | None:
    """The layer of a client module; None for the package's root, the facade that re-exports the SDK."""
    for rank, prefixes in enumerate(CLIENT_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes.split()):
            return rank
    return None


def upward_imports() -> list[str]:
    found = []
    for module, path in modules("collat_client").items():
        rank = client_layer(module)
        if rank is None:
            continue
        for name, line in imported_names(module, path):
            if name.split(".")[0] != "collat_client":
                continue
            target = client_layer(name)
            if target is None or target > rank:
                found.append(f"{shown(path)}:{line} imports {name}")
    return found


def test_every_client_module_sits_in_a_layer():
    assert [m for m in modules("collat_client") if client_layer(m) is None] == ["collat_client"]


def test_no_import_runs_up_the_client_layers():
    assert upward_imports() == []


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """Without this the check above could pass by seeing nothing: a DICOM module reaching up into the SDK."""
    package = tmp_path / "collat_client"
    (package / "dicom").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "dicom" / "__init__.py").write_text("")
    (package / "dicom" / "up.py").write_text("def f():\n    from ..sdk import client\n    from .. import errors\n")
    monkeypatch.setitem(SOURCES, "collat_client", tmp_path)
    assert [line.split(" imports ")[1] for line in upward_imports()] == ["collat_client.sdk.client"]


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
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and \
                    "overload" not in {ast.unparse(d).split(".")[-1] for d in node.decorator_list}:  # a stub is no home
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
    ("collateral_perfusion_score", "collat_ensemble.clinical"),
    ("MIN_PERFUSION_SLICES", "collat_contract.limits"), ("MAX_VOLUME_VOXELS", "collat_contract.limits"),
    ("MAX_PERFUSION_ELEMENTS", "collat_contract.limits"),
    ("CORE_ADC_THRESHOLD", "collat_contract.clinical"), ("CORE_LABEL", "collat_contract.clinical"),
    ("SCHEMA_VERSION", "collat_contract.metrics"),
    ("DAWN_AGE_SPLIT", "collat_ensemble.clinical"), ("DAWN_MIN_NIHSS", "collat_ensemble.clinical"),
    ("DAWN_GROUP_C_MIN_NIHSS", "collat_ensemble.clinical"), ("DAWN_GROUP_A_MAX_CORE_ML", "collat_ensemble.clinical"),
    ("DAWN_GROUP_B_MAX_CORE_ML", "collat_ensemble.clinical"), ("DAWN_GROUP_C_MAX_CORE_ML", "collat_ensemble.clinical"),
])
def test_each_rule_and_name_is_defined_once(name, home):
    assert definitions(name) == [home]


def test_only_the_lesion_rule_reads_the_lesion_threshold():
    readers = [module for module, path in ALL_MODULES.items()
               if "LESION_PROBABILITY_THRESHOLD" in path.read_text() and module != "collat_ensemble.clinical"]
    assert readers == ["collat_ensemble.hypoperfusion"]


# ---------------------------------------------------------------- one METRICS vocabulary, one home per number
# The METRICS document's keys live in collat_contract.metrics (TypedDicts the server builds it through); the SDK's
# pydantic models (collat_client.schema) read it and must hold exactly the same keys, nested parts included.


def metrics_models() -> dict[type, type]:
    """Each SDK model of the METRICS document -> the contract's TypedDict for the same part."""
    from collat_client import schema
    from collat_contract import metrics

    return {schema.Metrics: metrics.MetricsDocument, schema.CollateralMetrics: metrics.CollateralMetrics,
            schema.HypoperfusionMetrics: metrics.HypoperfusionMetrics, schema.Defuse3: metrics.Defuse3,
            schema.Dawn: metrics.Dawn, schema.Contrast: metrics.Contrast, schema.Registration: metrics.Registration,
            schema.LesionRule: metrics.LesionRule, schema.LesionWithheld: metrics.LesionWithheld,
            schema.ClinicalEcho: metrics.ClinicalEcho,
            schema.ModelInfo: metrics.ModelInfo, schema.QualityCheck: metrics.QualityCheck,
            schema.Quality: metrics.Quality}


def typed_keys(typed: type) -> set[str]:
    return set(typed.__required_keys__) | set(typed.__optional_keys__)  # type: ignore[attr-defined]


def inner_types(annotation: object) -> Iterator[object]:
    """An annotation and every type inside it (``X | None``, ``list[X]``, ``dict[str, X]``, ...)."""
    import typing

    yield annotation
    for arg in typing.get_args(annotation):
        yield from inner_types(arg)


def nested_models(model: type) -> set[type]:
    """A pydantic model and every model its fields hold, however deep."""
    from pydantic import BaseModel

    found: set[type] = set()
    todo = [model]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        todo += [t for field in current.model_fields.values() for t in inner_types(field.annotation)  # type: ignore[attr-defined]
                 if isinstance(t, type) and issubclass(t, BaseModel)]
    return found


def test_every_model_of_the_metrics_document_has_a_typed_dict_in_the_contract():
    from collat_client.schema import Metrics

    assert nested_models(Metrics) == set(metrics_models())


@pytest.mark.parametrize("model", list(metrics_models()), ids=lambda m: m.__name__)
def test_each_metrics_model_holds_exactly_its_typed_dicts_keys(model):
    import typing

    pairs = metrics_models()
    typed = pairs[model]
    assert set(model.model_fields) == typed_keys(typed)
    assert {n for n, f in model.model_fields.items() if f.is_required()} == set(typed.__required_keys__)
    hints = typing.get_type_hints(typed)
    for name, field in model.model_fields.items():  # a nested model sits where its TypedDict (or one extending it) does
        for inner in (t for t in inner_types(field.annotation) if t in pairs):
            candidates = [t for t in inner_types(hints[name]) if typing.is_typeddict(t)]
            assert any(typed_keys(pairs[inner]) <= typed_keys(t) for t in candidates), f"{model.__name__}.{name}"


def test_the_sdk_reads_the_contracts_schema_version():
    import typing

    from collat_client.schema import Metrics
    from collat_contract.metrics import SCHEMA_VERSION

    assert typing.get_args(Metrics.model_fields["schema_version"].annotation) == (SCHEMA_VERSION,)
    written = [module for module, path in ALL_MODULES.items() for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value == SCHEMA_VERSION]
    assert written == ["collat_contract.metrics"]


def test_the_clinical_echo_is_the_clinical_inputs():
    from collat_contract.clinical import FIELDS
    from collat_contract.metrics import ClinicalEcho

    assert tuple(ClinicalEcho.__annotations__) == FIELDS


def core_threshold_restated(path: Path) -> list[int]:
    """Lines where a module writes the core's ADC threshold itself: the number (however spelled), or its text in a
    string that is not a docstring (prose explaining the rule may name it; code must read the contract's)."""
    import math

    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in docstrings
            and ((isinstance(node.value, float) and math.isclose(node.value, 620e-6, rel_tol=1e-9))
                 or (isinstance(node.value, str) and "620e-6" in node.value))]


def test_the_core_threshold_is_written_in_the_contract_alone():
    restated = {module: lines for module, path in ALL_MODULES.items() if (lines := core_threshold_restated(path))}
    assert list(restated) == ["collat_contract.clinical"]


def test_the_core_threshold_scan_sees_a_restated_threshold(tmp_path):
    """Without this the check above could pass by seeing nothing."""
    path = tmp_path / "m.py"
    path.write_text('"""The core is ADC < 620e-6."""\nA = 0.62e-3\n\n\ndef f():\n    """620e-6 here is prose."""\n'
                    '    return f"ADC < 620e-6 {A}"  # 620e-6 in a comment\n')
    assert core_threshold_restated(path) == [2, 7]

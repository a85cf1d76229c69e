"""The house's layering, checked on the source: where Ray may be imported, what the analysis
layer may read of the package, and no import cycles between modules at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("spp_sweep", "analysis")
# The only modules that import Ray (spp_sweep/sweep/__init__.py says the same; keep both in step).
RAY_MODULES = {"spp_sweep.sweep.connection", "spp_sweep.sweep.recovery", "spp_sweep.sweep.runner",
               "spp_sweep.sweep.trackers", "spp_sweep.sweep.trainable", "spp_sweep.sweep.disk_full",
               "spp_sweep.sweep.optuna_search", "spp_sweep.sweep.rungs"}
# What analysis/ may import of spp_sweep: file formats, errors and pure formulas, never the engine
# or the sweep code (what it needs of a study, it reads from the sweep's plan.json).
ANALYSIS_MAY_IMPORT = {"spp_sweep.atomic_files", "spp_sweep.code_version", "spp_sweep.errors", "spp_sweep.metrics",
                       "spp_sweep.trial_files", "spp_sweep.safe_yaml", "spp_sweep.results", "spp_sweep.results.load",
                       "spp_sweep.results.tables"}  # file formats, the trial table and formulas: no engine, no Ray


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under `if TYPE_CHECKING:`-free try/if blocks at module level
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


MODULES = _modules()


def test_only_the_listed_sweep_modules_import_ray():
    importing = {name for name, path in MODULES.items()
                 if any(m == "ray" or m.startswith("ray.") for m in _imports(name, path, top_level_only=False))}
    assert importing == RAY_MODULES
    docstring = ast.get_docstring(ast.parse((REPO / "spp_sweep" / "sweep" / "__init__.py").read_text())) or ""
    assert all(f"``{name.rsplit('.', 1)[1]}``" in docstring for name in RAY_MODULES), docstring


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("analysis")))
def test_analysis_reads_files_not_the_engine(name):
    used = {m for m in _imports(name, MODULES[name], top_level_only=False) if m in MODULES}
    package = {m for m in used if m.startswith("spp_sweep")}
    assert package - ANALYSIS_MAY_IMPORT - {"spp_sweep"} == set()


def test_no_import_cycles_at_import_time():
    graph = {name: {m for m in _imports(name, path, top_level_only=True) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    # a package's __init__ importing its own submodules is how packages are built, not a cycle
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, trail + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(edges):
        if state.get(start) is None and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("spp_sweep.models")))
def test_models_import_nothing_above_them(name):
    """Networks are the bottom layer: objectives, methods and the engine import them, never the
    other way round, not even inside a function (the VAE's likelihood lives in models/vae.py)."""
    used = {m for m in _imports(name, MODULES[name], top_level_only=False) if m in MODULES}
    assert {m for m in used if not m.startswith(("spp_sweep.models", "spp_sweep.errors", "spp_sweep.memory"))} == set()


def test_the_sweep_driver_imports_nothing_of_the_reports() -> None:
    """spp_sweep/sweep/ reads results through spp_sweep.results; only the commands above it
    (spp_sweep.cli.commands, spp_sweep.recommend) write reports."""
    driver = {name: path for name, path in MODULES.items() if name.startswith("spp_sweep.sweep")}
    assert driver
    for name, path in driver.items():
        used = _imports(name, path, top_level_only=False)
        assert not any(m == "analysis" or m.startswith("analysis.") for m in used), (name, sorted(used))


@pytest.mark.parametrize("name", ["spp_sweep.results", "spp_sweep.results.load", "spp_sweep.results.tables"])
def test_the_results_layer_needs_no_engine_ray_or_reports(name: str) -> None:
    used = _imports(name, MODULES[name], top_level_only=False)
    allowed = {"spp_sweep", "spp_sweep.results", "spp_sweep.results.load", "spp_sweep.trial_files",
               "spp_sweep.metrics", "spp_sweep.atomic_files", "spp_sweep.errors"}
    assert {m for m in used if m in MODULES} <= allowed and not any(m.startswith(("ray", "torch")) for m in used)


def uri_branches(source: str) -> list[int]:
    """Lines of ``source`` that test a string for "://" (``"://" in x``, ``"://" not in x``)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value == "://"
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)]


def test_only_the_storage_module_tells_a_uri_from_a_folder() -> None:
    """A path is a local folder or an object store's URI: sweep/storage.py says which, once."""
    assert uri_branches('if "://" in root:\n    pass\nok = "://" not in path\n') == [1, 3]  # what it finds
    branching = [f"{path.relative_to(REPO)}:{line}" for package in PACKAGES for path in (REPO / package).rglob("*.py")
                 for line in uri_branches(path.read_text())]
    assert branching == []  # storage.storage_of tests its URI_SCHEME, and every other module asks it

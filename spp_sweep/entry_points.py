"""Methods and benchmarks from other packages, through Python entry points.

A package adds a method or a benchmark by declaring it in its own ``pyproject.toml``::

    [project.entry-points."spp_sweep.methods"]
    my_method = "my_package.method:MyMethod"          # a spp_sweep.methods.Method subclass, name "my_method"

    [project.entry-points."spp_sweep.benchmarks"]
    my_benchmark = "my_package.data:SPEC"             # a spp_sweep.benchmarks.BenchmarkSpec, name "my_benchmark"

Once it is installed (``pip install -e .`` in the same environment), every spp-sweep process
finds it: the CLI, study files and every Ray worker (locally or on a cluster where each node has
the package installed), because each imports the registries, which load the entry points. It is
code the user installed, so loading it asks no flag (unlike a study file's ``benchmark: python``).
A plugin that fails to load, or would replace a built-in name, is left out with one line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

METHOD_GROUP = "spp_sweep.methods"
BENCHMARK_GROUP = "spp_sweep.benchmarks"


def load(group: str, taken: set[str], valid: Callable[[str, Any], str | None]) -> dict[str, Any]:
    """name -> object of every entry point in ``group``; ``valid(name, object)`` says what is wrong."""
    found: dict[str, Any] = {}
    for point in entry_points(group=group):
        if point.name in taken or point.name in found:
            print(f"spp-sweep: plugin {point.value} ({group}) is left out: the name {point.name!r} is taken",
                  file=sys.stderr)
            continue
        try:
            loaded = point.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break every command
            print(f"spp-sweep: plugin {point.value} ({group}) is left out: {type(error).__name__}: {error}",
                  file=sys.stderr)
            continue
        problem = valid(point.name, loaded)
        if problem:
            print(f"spp-sweep: plugin {point.value} ({group}) is left out: {problem}", file=sys.stderr)
            continue
        found[point.name] = loaded
    return found


class Registry(dict):
    """A name -> object registry that adds its entry-point plugins on first use, not at import:
    a plugin imports spp_sweep itself, so loading it while spp_sweep's registries are still being
    imported would be circular."""

    def __init__(self, builtin: dict[str, Any], group: str, valid: Callable[[str, Any], str | None]):
        super().__init__(builtin)
        self._builtin = dict(builtin)
        self._group, self._valid, self._loaded = group, valid, False

    def builtin(self) -> dict[str, Any]:
        """The entries the package itself ships, without any plugin."""
        return dict(self._builtin)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            super().update(load(self._group, set(super().keys()), self._valid))

    def __getitem__(self, key: str) -> Any:
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def __iter__(self):  # noqa: ANN204 - dict's own signature
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().get(key, default)

    def keys(self):  # noqa: ANN201
        self._load()
        return super().keys()

    def values(self):  # noqa: ANN201
        self._load()
        return super().values()

    def items(self):  # noqa: ANN201
        self._load()
        return super().items()

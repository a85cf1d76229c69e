"""Shared fixtures: a tiny model and task for hand computations, and the real-data root."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from spp_sweep.models import ContinualModel

REPO = Path(__file__).resolve().parents[1]


def mnist_root() -> Path | None:
    """$SPP_DATA_ROOT, else ../shared/data beside the checkout; None where MNIST is absent."""
    for candidate in [os.environ.get("SPP_DATA_ROOT"), REPO.parent / "shared" / "data"]:
        if candidate and (Path(candidate) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture
def data_root() -> Path:
    root = mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set SPP_DATA_ROOT to a folder holding MNIST/raw/*-ubyte "
                    "(e.g. `spp-sweep run --benchmark split_mnist --data-root DIR --download` once)")
    return root


def tiny_model(n_in: int = 3, n_hidden: int = 2, head_sizes=(2, 3), seed: int = 0) -> ContinualModel:
    """A linear trunk W (no bias) and linear heads V_h (no bias), in float64: easy to do by hand."""
    torch.manual_seed(seed)
    model = ContinualModel(nn.Linear(n_in, n_hidden, bias=False), n_hidden, head_sizes,
                           head_factory=lambda n: nn.Linear(n_hidden, n, bias=False))
    return model.double()


@pytest.fixture
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance shared by the sweep tests (started on first use, 2 CPUs); module
    scoped, so that a module's shared sweep (a module fixture) can take it too."""
    import ray

    if not ray.is_initialized():
        # address=local: a new instance even where a `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray


def resumed_after_second_task(config):
    """Run ``config`` with a checkpoint (through torch.save) after task 2, then a fresh
    Experiment loaded from it run to the end: what a restarted trial does. Returns its result."""
    return resumed_after_task(config, 1)


def resumed_after_task(config, task):
    """As :func:`resumed_after_second_task`, with the checkpoint after ``task`` (from 0)."""
    import io

    from spp_sweep.engine import Experiment

    checkpoints = []

    def keep(report, experiment):
        if report.task == task:
            buffer = io.BytesIO()
            torch.save(experiment.state_dict(), buffer)
            checkpoints.append(buffer.getvalue())

    Experiment(config).run(on_task_end=keep)
    resumed = Experiment(config)
    resumed.load_state_dict(torch.load(io.BytesIO(checkpoints[0]), weights_only=True))
    assert resumed.next_task == task + 1
    return resumed.run()


def spawning_tests(source: str) -> set[str]:
    """The test functions of a module's ``source`` that start a process (``subprocess.``), by
    themselves or through the module's own helper functions they call or fixtures they take."""
    tree = ast.parse(source)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}

    def spawns(name: str, seen: frozenset[str]) -> bool:
        node = functions[name]
        if "subprocess." in (ast.get_source_segment(source, node) or ""):
            return True
        called = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        called |= {argument.arg for argument in node.args.args}  # a fixture of the module, by its name
        called |= {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        # (or a string naming it: a parametrised fixture name, taken with request.getfixturevalue)
        return any(spawns(c, seen | {name}) for c in called & set(functions) - seen - {name})

    return {name for name in functions if name.startswith("test_") and spawns(name, frozenset())}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers (pyproject's markers): ``ray`` for the tests that start Ray in this process,
    ``subprocess`` for those that start another process (the CLI, a script, a cluster), ``slow``
    for tests/integration and the unit tests marked so; ``-m "not slow"`` is the quick tier."""
    spawning: dict[str, set[str]] = {}
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):  # directly or through a module's shared sweep
            item.add_marker(pytest.mark.ray)
        path = str(item.path)
        if path not in spawning:
            spawning[path] = spawning_tests(item.path.read_text())
        if getattr(item, "originalname", item.name) in spawning[path]:
            item.add_marker(pytest.mark.subprocess)
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.slow)

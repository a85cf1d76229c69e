"""Shared fixtures: a tiny model and task for hand computations, and the real-data root."""

from __future__ import annotations

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


@pytest.fixture
def ray_local():
    """One local Ray instance shared by the sweep tests (started on first use, 2 CPUs)."""
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start Ray in this process (``-m "not ray"`` runs the rest)."""
    for item in items:
        if {"ray_local", "finished_sweep"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)

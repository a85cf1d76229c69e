"""Task sequences held as tensors, and the helpers that cut a dataset into tasks.

Every benchmark is a list of :class:`Task` whose inputs and labels are tensors that fit in
memory: the engine moves them to the trial's device once and batches by index, which is
much faster than a DataLoader for data of this size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import ConfigError
from ..memory import check_memory
from .streaming import ImageFiles

# A task's images: a tensor in memory, or image files decoded batch by batch (benchmarks/streaming.py).
Inputs = torch.Tensor | ImageFiles


@dataclass(frozen=True)
class Task:
    """One task: train/test tensors with labels local to the task (0..n_classes-1).

    ``classes`` maps a local label to its global class id, which single-head methods
    (one output layer shared by all tasks) use as their target.
    """

    name: str
    x_train: Inputs
    y_train: torch.Tensor
    x_test: Inputs
    y_test: torch.Tensor
    classes: tuple[int, ...]
    x_val: Inputs | None = None  # carved from the training data by with_validation()
    y_val: torch.Tensor | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device) -> Task:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=move(self.x_val),
            y_val=move(self.y_val),
        )


@dataclass(frozen=True)
class Benchmark:
    """A named sequence of tasks sharing one input shape."""

    name: str
    tasks: tuple[Task, ...]
    input_shape: tuple[int, ...]
    # What the tasks ask of the network (spp_sweep/objectives.py): classification, or the
    # negative ELBO of a VAE. The engine's loop is the same for both.
    objective: str = "classification"

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_global_classes(self) -> int:
        """Output width of a single head shared by all tasks."""
        return 1 + max(c for task in self.tasks for c in task.classes)

    def to(self, device: torch.device) -> Benchmark:
        return replace(self, tasks=tuple(task.to(device) for task in self.tasks))


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registry entry: how to build a benchmark and the settings that suit it.

    ``train_defaults`` fill the run configuration's training fields the user left unset;
    ``method_defaults`` give per-method option defaults (a sensible λ differs per benchmark).
    """

    name: str
    description: str
    build: Callable[..., Benchmark]
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # epochs, lr, batch_size
    method_defaults: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    model_defaults: Mapping[str, object] = field(default_factory=dict)  # options of default_model only
    default_model: str = "mlp"
    objective: str = "classification"  # what its Benchmark's tasks ask (spp_sweep/objectives.py)


def stratified_split(
    y: torch.Tensor, test_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a per-class random train/test split (same fraction in every class)."""
    train, test = [], []
    for label in torch.unique(y):
        idx = torch.nonzero(y == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def with_validation(benchmark: Benchmark, fraction: float, seed: int) -> Benchmark:
    """Hold out a seeded, per-class ``fraction`` of every task's training data for validation.

    The split depends only on ``seed`` (not on a trial's seed), so every configuration and
    every repeat of a sweep is selected on the same validation samples, and the test set is
    never seen before the selected configuration is reported.
    """
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for task in benchmark.tasks:
        train, val = stratified_split(task.y_train.cpu(), fraction, generator)
        if len(train) == 0 or len(val) == 0:
            raise ConfigError(f"validation={fraction:g} leaves task {task.name!r} ({len(task.y_train)} training "
                              "samples) with an empty training or validation part; choose a fraction in (0, 1) "
                              "that leaves samples on both sides")
        tasks.append(replace(task, x_train=take(task.x_train, train),
                             y_train=task.y_train[train.to(task.y_train.device)],
                             x_val=take(task.x_train, val), y_val=task.y_train[val.to(task.y_train.device)]))
    return replace(benchmark, tasks=tuple(tasks))


def take(images: Inputs, index: torch.Tensor) -> Inputs:
    """``images[index]`` for tensors, and for image sets held as files (a lazy subset)."""
    if isinstance(images, ImageFiles):
        return images.subset(index.tolist())
    return images[index.to(images.device)]


def split_by_classes(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    groups: Sequence[Sequence[int]],
) -> list[Task]:
    """One task per class group, labels renumbered 0..k-1 inside each task (class-split)."""
    tasks = []
    for index, group in enumerate(groups):
        lookup = torch.full((int(max(y_train.max(), y_test.max())) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(list(group))] = torch.arange(len(group))
        train_mask = lookup[y_train] >= 0
        test_mask = lookup[y_test] >= 0
        tasks.append(
            Task(
                name=f"{name}[{index}]:{'/'.join(map(str, group))}",
                x_train=x_train[train_mask],
                y_train=lookup[y_train[train_mask]],
                x_test=x_test[test_mask],
                y_test=lookup[y_test[test_mask]],
                classes=tuple(int(c) for c in group),
            )
        )
    return tasks


def permuted_tasks(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    n_tasks: int,
    generator: torch.Generator,
) -> list[Task]:
    """``n_tasks`` tasks, each the whole dataset under its own fixed random pixel permutation."""
    n_classes = int(y_train.max()) + 1
    n_features = x_train[0].numel()
    check_memory(n_tasks * (len(x_train) + len(x_test)) * n_features * x_train.element_size(),
                 f"{n_tasks} permuted copies of the data", "choose fewer tasks (n_tasks / permutations)")
    tasks = []
    for index in range(n_tasks):
        perm = torch.randperm(n_features, generator=generator)
        tasks.append(
            Task(
                name=f"{name}[{index}]",
                x_train=x_train.flatten(1)[:, perm].contiguous(),
                y_train=y_train.clone(),
                x_test=x_test.flatten(1)[:, perm].contiguous(),
                y_test=y_test.clone(),
                classes=tuple(range(n_classes)),
            )
        )
    return tasks


def limit_per_task(tasks: Sequence[Task], max_train: int | None, generator: torch.Generator) -> list[Task]:
    """Keep a seeded random subset of at most ``max_train`` training samples per task."""
    if max_train is None:
        return list(tasks)
    if max_train <= 0:
        raise ConfigError(f"max_train_per_task must be positive, got {max_train}")
    limited = []
    for task in tasks:
        if len(task.y_train) <= max_train:
            limited.append(task)
            continue
        keep = torch.randperm(len(task.y_train), generator=generator)[:max_train].sort().values
        limited.append(replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep]))
    return limited


def pairs(n_classes: int, per_task: int) -> list[list[int]]:
    """Consecutive class groups: pairs(10, 2) -> [[0,1],[2,3],...]. Every task needs two classes
    at least (a one-class task scores 1.0 before any training) and the stream two tasks."""
    groups = [list(range(s, min(s + per_task, n_classes))) for s in range(0, n_classes, per_task)]
    if per_task < 2 or len(groups) < 2 or len(groups[-1]) < 2:
        usable = [k for k in range(2, n_classes // 2 + 1) if n_classes % k != 1]
        raise ConfigError(f"classes_per_task={per_task} cuts {n_classes} classes into {len(groups)} task(s) of "
                          f"{'/'.join(str(len(g)) for g in groups)} classes; every task needs at least two classes "
                          f"and the stream two tasks: choose one of {', '.join(map(str, usable))}")
    return groups

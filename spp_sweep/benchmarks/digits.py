"""The embedded default benchmarks, built from scikit-learn's bundled 8x8 digits.

The data ships inside scikit-learn, so these run anywhere with no download: they are the
benchmarks of the README's main job and of the test suite.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Benchmark, limit_per_task, pairs, permuted_tasks, split_by_classes, stratified_split


def _load_digits(data_seed: int, test_fraction: float) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    images, labels = load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float32) / 16.0  # pixel values are 0..16
    y = torch.as_tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(data_seed)
    train, test = stratified_split(y, test_fraction, generator)
    return x[train], y[train], x[test], y[test]


def split_digits(
    data_seed: int = 0, test_fraction: float = 0.3, classes_per_task: int = 2, max_train_per_task: int | None = None
) -> Benchmark:
    """Split digits: 5 tasks of two classes {0,1}..{8,9}, as split MNIST but 8x8."""
    x_train, y_train, x_test, y_test = _load_digits(data_seed, test_fraction)
    tasks = split_by_classes("split_digits", x_train, y_train, x_test, y_test, pairs(10, classes_per_task))
    tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("split_digits", tuple(tasks), input_shape=(64,))


def permuted_digits(
    n_tasks: int = 5, data_seed: int = 0, test_fraction: float = 0.3, max_train_per_task: int | None = None
) -> Benchmark:
    """Permuted digits: ``n_tasks`` tasks of all 10 classes, one fixed pixel permutation each."""
    if n_tasks < 1:
        raise ConfigError(f"n_tasks must be at least 1, got {n_tasks}")
    x_train, y_train, x_test, y_test = _load_digits(data_seed, test_fraction)
    generator = torch.Generator().manual_seed(data_seed + 2)
    tasks = permuted_tasks("permuted_digits", x_train, y_train, x_test, y_test, n_tasks, generator)
    tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("permuted_digits", tuple(tasks), input_shape=(64,))


def digit_domains(data_seed: int = 0, test_fraction: float = 0.3, max_train_per_task: int | None = None) -> Benchmark:
    """Two image domains for the continual VAE (section 4.2.4's faces → anime, in miniature):
    the 8x8 digits 0-4, then 5-9, as 1x8x8 images in [0, 1]. Labels are kept but unused: the
    objective is each domain's negative ELBO."""
    x_train, y_train, x_test, y_test = _load_digits(data_seed, test_fraction)
    tasks = split_by_classes("digit_domains", x_train.view(-1, 1, 8, 8), y_train, x_test.view(-1, 1, 8, 8), y_test,
                             [range(0, 5), range(5, 10)])
    tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("digit_domains", tuple(tasks), input_shape=(1, 8, 8), objective="elbo")

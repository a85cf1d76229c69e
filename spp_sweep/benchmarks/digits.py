"""The embedded default benchmarks, built from scikit-learn's bundled 8x8 digits.

The data ships inside scikit-learn, so these run anywhere with no download: they are the
benchmarks of the README's main job and of the test suite.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .base import Benchmark, limit_per_task, pairs, permuted_tasks, split_by_classes, stratified_split


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as (images (N, 64) in 0..16, labels), as ``load_digits`` gives them.

    Read straight from the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``,
    64 pixel columns then the label), which is what ``load_digits`` does too, without importing
    ``sklearn.datasets`` (2 s, paid again by every Ray worker that builds a digits benchmark);
    ``load_digits`` itself where that file is not where this expects it.
    """
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = Path(roots[0], "datasets", "data", "digits.csv.gz") if roots else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        if table.shape == (1797, 65):
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return images, labels


def _load_digits(data_seed: int, test_fraction: float) -> tuple[torch.Tensor, ...]:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    images, labels = digits_arrays()
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

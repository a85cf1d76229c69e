"""Split and permuted MNIST through torchvision, from a data root (paper Tables 2 and 3)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from .base import Benchmark, limit_per_task, pairs, permuted_tasks, split_by_classes

DATA_ROOT_ENV = "SPP_DATA_ROOT"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """The explicit data root, else $SPP_DATA_ROOT; a one-line error when neither is set."""
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise DataError(
            f"no data root given: pass --data-root DIR or set {DATA_ROOT_ENV} "
            "(torchvision layout, e.g. DIR/MNIST/raw), or add --download on a machine with internet"
        )
    return Path(root).expanduser().resolve()


def load_mnist(data_root: str | os.PathLike | None, download: bool = False) -> tuple[torch.Tensor, ...]:
    """MNIST as flat float tensors in [0, 1]: x_train (60000, 784), y_train, x_test, y_test."""
    from torchvision.datasets import MNIST

    root = resolve_data_root(data_root)
    try:
        train = MNIST(root=str(root), train=True, download=download)
        test = MNIST(root=str(root), train=False, download=download)
        x_train, y_train = train.data, train.targets
        x_test, y_test = test.data, test.targets
    except RuntimeError as error:
        if "not found" in str(error).lower():
            raise DataError(
                f"MNIST not found under {root / 'MNIST' / 'raw'}: point --data-root (or {DATA_ROOT_ENV}) "
                "at the folder that holds MNIST/, or add --download"
            ) from None
        raise DataError(f"MNIST under {root} could not be read ({error}); delete it and re-download") from None
    except Exception as error:  # a truncated or corrupt idx file raises from numpy/torch
        raise DataError(
            f"MNIST under {root / 'MNIST' / 'raw'} is corrupt ({type(error).__name__}: {error}); "
            "delete those files and re-download"
        ) from None
    if x_train.shape[1:] != (28, 28) or len(x_train) != len(y_train):
        raise DataError(f"MNIST under {root} has unexpected shape {tuple(x_train.shape)}; re-download it")
    return (
        x_train.flatten(1).float().div_(255.0),
        y_train.long(),
        x_test.flatten(1).float().div_(255.0),
        y_test.long(),
    )


def split_mnist(
    data_root: str | None = None,
    download: bool = False,
    classes_per_task: int = 2,
    max_train_per_task: int | None = None,
    data_seed: int = 0,
) -> Benchmark:
    """Split MNIST: 5 two-class tasks {0,1} {2,3} {4,5} {6,7} {8,9}, one head per task."""
    x_train, y_train, x_test, y_test = load_mnist(data_root, download)
    tasks = split_by_classes("split_mnist", x_train, y_train, x_test, y_test, pairs(10, classes_per_task))
    tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("split_mnist", tuple(tasks), input_shape=(784,))


def permuted_mnist(
    data_root: str | None = None,
    download: bool = False,
    n_tasks: int = 10,
    max_train_per_task: int | None = None,
    data_seed: int = 0,
) -> Benchmark:
    """Permuted MNIST: ``n_tasks`` tasks, each all of MNIST under one fixed pixel permutation."""
    if n_tasks < 1:
        raise ConfigError(f"n_tasks must be at least 1, got {n_tasks}")
    x_train, y_train, x_test, y_test = load_mnist(data_root, download)
    generator = torch.Generator().manual_seed(data_seed + 2)
    if max_train_per_task is not None:  # subsample before permuting: n_tasks copies of 60k is large
        keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(data_seed + 1))[:max_train_per_task]
        x_train, y_train = x_train[keep.sort().values], y_train[keep.sort().values]
    tasks = permuted_tasks("permuted_mnist", x_train, y_train, x_test, y_test, n_tasks, generator)
    return Benchmark("permuted_mnist", tuple(tasks), input_shape=(784,))


def mnist_domains(
    data_root: str | None = None,
    download: bool = False,
    max_train_per_task: int | None = None,
    data_seed: int = 0,
) -> Benchmark:
    """Two image domains for the continual VAE (section 4.2.4's faces → anime on real data):
    MNIST digits 0-4, then 5-9, as 1x28x28 images in [0, 1]. The 8x8 ``digit_domains`` is too
    small for its VAE to learn task 1 well (docs/results/reproduction.md §6); 28x28 MNIST with
    about 30,000 images per domain is the smallest real-data setting on this machine where it can.
    Labels are kept but unused: the objective is each domain's negative ELBO."""
    x_train, y_train, x_test, y_test = load_mnist(data_root, download)
    tasks = split_by_classes("mnist_domains", x_train.view(-1, 1, 28, 28), y_train, x_test.view(-1, 1, 28, 28),
                             y_test, [range(0, 5), range(5, 10)])
    tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("mnist_domains", tuple(tasks), input_shape=(1, 28, 28), objective="elbo")

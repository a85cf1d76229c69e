"""Benchmark registry and loaders: shapes, task splits, errors for missing or corrupt data."""

import numpy as np
import pytest
import torch

from spp_sweep.benchmarks import build_benchmark
from spp_sweep.errors import ConfigError, DataError


def test_split_digits_tasks():
    bench = build_benchmark("split_digits")
    assert bench.n_tasks == 5 and bench.input_shape == (64,)
    assert [t.classes for t in bench.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for task in bench.tasks:
        assert set(task.y_train.tolist()) == {0, 1} and set(task.y_test.tolist()) == {0, 1}
        assert task.x_train.shape[1] == 64 and 0 <= task.x_train.min() and task.x_train.max() <= 1
    total = sum(len(t.y_train) + len(t.y_test) for t in bench.tasks)
    assert total == 1797


def test_split_is_fixed_by_data_seed():
    a, b = build_benchmark("split_digits"), build_benchmark("split_digits")
    c = build_benchmark("split_digits", {"data_seed": 1})
    assert torch.equal(a.tasks[0].x_test, b.tasks[0].x_test)
    assert not torch.equal(a.tasks[0].x_test, c.tasks[0].x_test)


def test_permuted_digits_permutes_pixels_consistently():
    bench = build_benchmark("permuted_digits", {"n_tasks": 3})
    assert bench.n_tasks == 3
    t0, t1 = bench.tasks[0], bench.tasks[1]
    assert torch.equal(t0.y_train, t1.y_train)
    # the same images, columns permuted: sorted pixel values per image agree
    assert torch.equal(t0.x_train.sort(1).values, t1.x_train.sort(1).values)
    assert not torch.equal(t0.x_train, t1.x_train)


def test_unknown_benchmark_and_option():
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'.*split_digits"):
        build_benchmark("nope")
    with pytest.raises(ConfigError, match="no option 'colour'"):
        build_benchmark("split_digits", {"colour": 1})


def test_max_train_per_task():
    bench = build_benchmark("split_digits", {"max_train_per_task": 50})
    assert all(len(t.y_train) == 50 for t in bench.tasks)


def test_mnist_without_root_names_the_fix(monkeypatch):
    monkeypatch.delenv("SPP_DATA_ROOT", raising=False)
    with pytest.raises(DataError, match="--data-root"):
        build_benchmark("split_mnist")


def test_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match="MNIST not found under .*MNIST/raw"):
        build_benchmark("split_mnist", {"data_root": str(tmp_path)})


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    import struct

    return struct.pack(">" + "I" * (1 + len(dims)), magic, *dims) + payload


def test_mnist_corrupt_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 60000), ("t10k", 10000)):
        # headers in the real idx format, but the image payload is truncated
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx(0x803, [n, 28, 28], bytes(1000)))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx(0x801, [n], bytes(n)))
    with pytest.raises(DataError, match="corrupt|could not be read|unexpected"):
        build_benchmark("split_mnist", {"data_root": str(tmp_path)})


def test_split_mnist_real(data_root):
    bench = build_benchmark("split_mnist", {"data_root": str(data_root)})
    assert bench.n_tasks == 5 and bench.input_shape == (784,)
    assert sum(len(t.y_test) for t in bench.tasks) == 10000
    assert sum(len(t.y_train) for t in bench.tasks) == 60000


def test_permuted_mnist_real(data_root):
    bench = build_benchmark("permuted_mnist", {"data_root": str(data_root), "n_tasks": 2, "max_train_per_task": 500})
    assert bench.n_tasks == 2 and len(bench.tasks[0].y_train) == 500 and len(bench.tasks[0].y_test) == 10000
    assert bench.tasks[0].classes == tuple(range(10))


def test_digits_are_read_exactly_as_load_digits_gives_them():
    """The embedded data come from scikit-learn's own CSV without importing sklearn.datasets."""
    from sklearn.datasets import load_digits

    from spp_sweep.benchmarks.digits import digits_arrays

    images, labels = digits_arrays()
    expected_images, expected_labels = load_digits(return_X_y=True)
    assert np.array_equal(images, expected_images) and np.array_equal(labels, expected_labels)
    assert images.dtype == expected_images.dtype and labels.dtype.kind == "i"


def test_mnist_domains_real(data_root):
    bench = build_benchmark("mnist_domains", {"data_root": str(data_root), "max_train_per_task": 300})
    assert bench.n_tasks == 2 and bench.input_shape == (1, 28, 28)
    assert [len(t.y_train) for t in bench.tasks] == [300, 300]
    assert sum(len(t.y_test) for t in bench.tasks) == 10000
    assert float(bench.tasks[1].x_test.max()) == 1.0 and float(bench.tasks[1].x_test.min()) == 0.0

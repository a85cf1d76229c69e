"""Your own data: array files, image folders, entry points, their checks, and validation splits."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from spp_sweep.benchmarks import build_benchmark
from spp_sweep.benchmarks.base import with_validation
from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import DataError, UserError


def blobs(n_classes: int = 4, per_class: int = 30, dim: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Separable Gaussian blobs, one per class: x_train, y_train, x_test, y_test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, dim))
    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), n)
        return (centres[y] + rng.normal(0, 0.5, size=(len(y), dim))).astype(np.float32), y
    x_train, y_train = draw(per_class)
    x_test, y_test = draw(per_class // 3)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_npz(path: Path, **overrides: np.ndarray) -> Path:
    np.savez(path, **{**blobs(), **overrides})
    return path


# -- 1. array files ----------------------------------------------------------------------------
def test_an_npz_splits_into_tasks_by_count_grouping_or_permutation(tmp_path: Path) -> None:
    path = str(write_npz(tmp_path / "blobs.npz"))
    by_count = build_benchmark("arrays", {"path": path, "n_tasks": 2})
    assert [t.classes for t in by_count.tasks] == [(0, 1), (2, 3)]
    assert all(set(t.y_train.tolist()) == {0, 1} for t in by_count.tasks)  # labels local to each task
    shuffled = build_benchmark("arrays", {"path": path, "n_tasks": 2, "order": "random", "data_seed": 3})
    assert sorted(c for t in shuffled.tasks for c in t.classes) == [0, 1, 2, 3]
    assert shuffled.tasks[0].classes == build_benchmark(
        "arrays", {"path": path, "n_tasks": 2, "order": "random", "data_seed": 3}).tasks[0].classes  # seeded
    grouped = build_benchmark("arrays", {"path": path, "groups": "3,0;1,2"})
    assert [t.classes for t in grouped.tasks] == [(3, 0), (1, 2)]
    with pytest.raises(DataError, match="one class only"):  # it would score 1.0 untrained, inflating ACC
        build_benchmark("arrays", {"path": path, "groups": "3,0;1;2"})
    with pytest.raises(DataError, match="one task"):
        build_benchmark("arrays", {"path": path, "groups": "0,1,2,3"})
    assert len(grouped.tasks[0].y_train) == 60 and grouped.tasks[0].x_train.shape[1:] == (6,)
    permuted = build_benchmark("arrays", {"path": path, "permutations": 3})
    assert permuted.n_tasks == 3 and all(t.classes == (0, 1, 2, 3) for t in permuted.tasks)
    assert not torch.equal(permuted.tasks[0].x_train, permuted.tasks[1].x_train)


def test_an_array_file_is_read_once_per_process_and_again_when_it_changes(tmp_path: Path) -> None:
    """Every trial a worker runs builds the benchmark again: the checked arrays are kept per file
    version, the tasks cut from them are copies (a trial writing into its data cannot reach the
    next trial's), and a file rewritten in place is read again."""
    import os

    from spp_sweep.benchmarks import custom

    path = write_npz(tmp_path / "blobs.npz")
    first = build_benchmark("arrays", {"path": str(path), "n_tasks": 2})
    before = custom._read_and_check.cache_info().hits
    first.tasks[0].x_train.fill_(7.0)  # a trial that normalises its data in place
    again = build_benchmark("arrays", {"path": str(path), "n_tasks": 2})
    assert custom._read_and_check.cache_info().hits == before + 1  # not read again
    assert not torch.equal(again.tasks[0].x_train, first.tasks[0].x_train)
    assert torch.equal(again.tasks[0].x_train[:5], torch.as_tensor(blobs()["x_train"][:5]))
    changed = blobs()
    changed["x_train"] = changed["x_train"] + 1.0  # same size: only the modification time tells
    np.savez(path, **changed)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
    rewritten = build_benchmark("arrays", {"path": str(path), "n_tasks": 2})
    assert torch.allclose(rewritten.tasks[0].x_train[:5], torch.as_tensor(changed["x_train"][:5]))


def test_a_pt_file_of_uint8_images_is_scaled_and_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = {"x_train": torch.tensor(rng.integers(0, 256, (40, 1, 4, 4)), dtype=torch.uint8),
            "y_train": torch.arange(40) % 4,
            "x_test": torch.tensor(rng.integers(0, 256, (12, 1, 4, 4)), dtype=torch.uint8),
            "y_test": torch.arange(12) % 4}
    torch.save(data, tmp_path / "images.pt")
    benchmark = build_benchmark("arrays", {"path": str(tmp_path / "images.pt"), "n_tasks": 2})
    x = benchmark.tasks[0].x_train
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1 and x.shape[1:] == (1, 4, 4)
    result = Experiment(RunConfig(method="spp", benchmark="arrays", epochs=1, threads=1,
                                  benchmark_options={"path": str(tmp_path / "images.pt"), "n_tasks": 2})).run()
    assert result.status == "finished" and len(result.accuracy_matrix) == 2


@pytest.mark.parametrize("change, message", [
    ({"x_test": np.zeros((40, 5), np.float32)}, "same shape"),
    ({"y_train": np.zeros(7, np.int64)}, "one label per sample"),
    ({"y_train": -np.ones(120, np.int64)}, "negative labels"),
    ({"y_train": np.full(120, 0.5)}, "non-integer labels"),
    ({"x_train": np.full((120, 6), np.nan, np.float32)}, "NaN/inf"),
    ({"x_test": np.where(np.arange(240).reshape(40, 6) == 7, np.inf, 0.0).astype(np.float32)}, "1 NaN/inf"),
    ({"x_train": np.zeros(120, np.float32)}, "one row per sample"),
])
def test_bad_arrays_are_one_line_errors(tmp_path: Path, change: dict, message: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **change)
    with pytest.raises(UserError, match=message):
        build_benchmark("arrays", {"path": str(path), "n_tasks": 2})


@pytest.mark.parametrize("options, message", [
    ({"groups": "0,1;2"}, r"classes \[3\] are in no task"),
    ({"groups": "0,1;1,2,3"}, "more than one task"),
    ({"groups": "0,1;2,3,7"}, "no training or no test sample"),
    ({"n_tasks": 9}, "from 1 to 4"),
    ({}, "say how classes form tasks"),
    ({"n_tasks": 2, "permutations": 2}, "not several"),
    ({"groups": "a;b"}, "write classes like"),
])
def test_bad_task_splits_are_one_line_errors(tmp_path: Path, options: dict, message: str) -> None:
    path = write_npz(tmp_path / "blobs.npz")
    with pytest.raises(UserError, match=message):
        build_benchmark("arrays", {"path": str(path), **options})


def test_an_empty_task_is_caught(tmp_path: Path) -> None:
    data = blobs()
    keep = data["y_test"] != 3  # class 3 has training samples but no test sample
    path = write_npz(tmp_path / "gap.npz", x_test=data["x_test"][keep], y_test=data["y_test"][keep])
    with pytest.raises(UserError, match=r"task 2 \(classes \[2, 3\]\).*no training or no test sample"):
        build_benchmark("arrays", {"path": str(path), "n_tasks": 2})


def test_missing_or_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        build_benchmark("arrays", {"path": str(tmp_path / "nope.npz"), "n_tasks": 2})
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(UserError, match="unknown file type"):
        build_benchmark("arrays", {"path": str(tmp_path / "data.csv"), "n_tasks": 2})
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 2)))
    with pytest.raises(UserError, match="has no y_train, x_test, y_test"):
        build_benchmark("arrays", {"path": str(tmp_path / "partial.npz"), "n_tasks": 2})
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(UserError, match="not a readable .npz"):
        build_benchmark("arrays", {"path": str(tmp_path / "broken.npz"), "n_tasks": 2})


def test_the_cli_reports_bad_data_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "nan.npz", x_train=np.full((120, 6), np.nan, np.float32))
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "run", "--benchmark", "arrays", "--benchmark-option",
                           f"path={path}", "--n-tasks", "2", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "NaN/inf" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


# -- 2. image folders ----------------------------------------------------------------------------
def write_image_tree(root: Path, classes: list[str], per_class: int, size: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.clip(rng.normal(40 + 50 * index, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:03d}.png")


def test_an_image_folder_tree_becomes_tasks_in_memory_or_streamed(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "pics", ["cat", "dog", "eel", "fox"], per_class=10)
    options = {"path": str(tmp_path / "pics"), "image_size": 8, "n_tasks": 2, "test_fraction": 0.3}
    benchmark = build_benchmark("image_folder", options)
    first = benchmark.tasks[0]
    assert benchmark.input_shape == (3, 8, 8) and first.classes == (0, 1) and "cat/dog" in first.name
    assert len(first.y_train) == 14 and len(first.y_test) == 6  # 7:3 per class
    streamed = build_benchmark("image_folder", {**options, "in_memory": False, "workers": 0})
    assert torch.allclose(streamed.tasks[1].x_test[:], benchmark.tasks[1].x_test)


def test_an_image_folder_with_train_and_test_folders_uses_them(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "split" / "train", ["a", "b", "c", "d", "e"], per_class=5)
    write_image_tree(tmp_path / "split" / "test", ["a", "b", "c", "d", "e"], per_class=2)
    benchmark = build_benchmark("image_folder", {"path": str(tmp_path / "split"), "groups": [[0, 1], [2, 3, 4]]})
    assert [len(t.y_train) for t in benchmark.tasks] == [10, 15] and [len(t.y_test) for t in benchmark.tasks] == [4, 6]
    with pytest.raises(UserError, match="does not exist"):
        build_benchmark("image_folder", {"path": str(tmp_path / "none"), "n_tasks": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="subfolder"):
        build_benchmark("image_folder", {"path": str(tmp_path / "empty"), "n_tasks": 2})


# -- 3. a Python entry point ---------------------------------------------------------------------------
def test_an_entry_point_returns_the_tasks(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "my_tasks.py").write_text(textwrap.dedent("""
        import numpy as np

        def make(n=2, dim=3):
            rng = np.random.default_rng(0)
            tasks = []
            for t in range(n):
                y = np.array([2 * t, 2 * t + 1] * 10)
                tasks.append({"name": f"pair{t}", "x_train": rng.normal(size=(20, dim)) + y[:, None],
                              "y_train": y, "x_test": rng.normal(size=(6, dim)) + y[:6, None], "y_test": y[:6]})
            return tasks

        def broken():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    benchmark = build_benchmark("python", {"entry": "my_tasks:make", "options": {"n": 3}})
    assert benchmark.n_tasks == 3 and benchmark.tasks[2].classes == (4, 5) and benchmark.tasks[2].name == "pair2"
    assert set(benchmark.tasks[2].y_train.tolist()) == {0, 1}
    for entry, message in [("my_tasks", "package.module:function"), ("no_such_module:make", "cannot import"),
                           ("my_tasks:absent", "has no function"), ("my_tasks:broken", "returned int")]:
        with pytest.raises(UserError, match=message):
            build_benchmark("python", {"entry": entry})


# -- validation split ------------------------------------------------------------------------------
def test_the_validation_split_is_seeded_per_class_and_independent_of_the_run_seed(tmp_path: Path) -> None:
    benchmark = build_benchmark("split_digits")
    held = with_validation(benchmark, 0.25, seed=0)
    task, original = held.tasks[0], benchmark.tasks[0]
    assert len(task.y_train) + len(task.y_val) == len(original.y_train)
    assert abs(len(task.y_val) / len(original.y_train) - 0.25) < 0.02
    assert torch.equal(task.x_test, original.x_test)  # the test set is untouched
    together = torch.cat([task.x_train, task.x_val])
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, original.x_train.tolist()))  # a partition
    again = with_validation(benchmark, 0.25, seed=0).tasks[0]
    assert torch.equal(again.x_val, task.x_val)
    seeds = [Experiment(RunConfig(method="finetune", epochs=1, threads=1, validation=0.25, seed=s)) for s in (0, 5)]
    assert torch.equal(seeds[0].benchmark.tasks[1].x_val, seeds[1].benchmark.tasks[1].x_val)
    with pytest.raises(UserError, match="validation"):
        RunConfig(validation=1.0).resolved()


def test_a_run_with_validation_reports_both_matrices(tmp_path: Path) -> None:
    result = Experiment(RunConfig(method="spp", epochs=2, threads=1, validation=0.2)).run()
    assert len(result.validation_matrix) == len(result.accuracy_matrix) == 5
    assert result.validation_metrics["acc"] == pytest.approx(np.mean(result.validation_matrix[-1]))
    assert result.validation_matrix != result.accuracy_matrix
    assert "validation_metrics" in result.to_json()
    plain = Experiment(RunConfig(method="spp", epochs=2, threads=1)).run().to_json()
    assert "validation_matrix" not in plain


def test_a_study_that_selects_on_validation_needs_a_validation_split() -> None:
    from spp_sweep.sweep.study import parse_study

    base = {"benchmark": "split_digits", "methods": ["spp"], "search": {"metric": "val_acc"}}
    with pytest.raises(UserError, match="fixed.validation"):
        parse_study(base)
    assert parse_study({**base, "fixed": {"validation": 0.2}}).metric == "val_acc"


def test_tasks_from_code_are_checked_for_nan_inputs_and_a_files_once_before_its_split() -> None:
    """check_tasks scans every task's inputs for NaN/inf unless they are rows of arrays already
    scanned whole (``arrays`` checks the file's arrays once, cached, then cuts tasks from them)."""
    from spp_sweep.benchmarks.base import Benchmark, Task
    from spp_sweep.benchmarks.custom import check_tasks

    x = torch.zeros(4, 3)
    x[1, 2] = math.nan
    task = Task(name="t", x_train=x, y_train=torch.tensor([0, 1, 0, 1]), x_test=torch.zeros(2, 3),
                y_test=torch.tensor([0, 1]), classes=(0, 1))
    benchmark = Benchmark("code", (task, task), input_shape=(3,))
    with pytest.raises(DataError, match="task 1 .* NaN/inf"):
        check_tasks(benchmark)
    assert check_tasks(benchmark, inputs_checked=True) is benchmark

"""Image benchmarks and CNNs on tiny files written in each dataset's real on-disk format."""

from __future__ import annotations

import copy
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from spp_sweep.benchmarks import build_benchmark
from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import DataError

RNG = np.random.default_rng(0)
PER_CLASS = 3  # training images per class in the tiny files
# The tiny CIFAR files are not torchvision's published archives: every build that reads them says so.
TINY = {"verify_checksums": False}


def images(n: int, channels: int, size: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


def write_mnist(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = images(n, 1, 28)[:, 0]
        y = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())


def write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 10 * PER_CLASS
        batch = {"data": images(n, 3, 32).reshape(n, -1), "labels": [i % 10 for i in range(n)],
                 "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, per_class in (("train", PER_CLASS), ("test", 1)):
        n = 100 * per_class
        labels = [i % 100 for i in range(n)]
        batch = {"data": images(n, 3, 32).reshape(n, -1), "fine_labels": labels,
                 "coarse_labels": [c // 5 for c in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_svhn(root: Path) -> None:
    from scipy.io import savemat

    (root / "svhn").mkdir(parents=True)
    for split, n in (("train", 50), ("test", 20)):
        x = np.transpose(images(n, 3, 32), (2, 3, 1, 0))  # the .mat layout: (32, 32, 3, N)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)         # 1..10, 10 meaning the digit 0
        savemat(str(root / "svhn" / f"{split}_32x32.mat"), {"X": x, "y": y})


def write_stl10(root: Path) -> None:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", 30), ("test", 20)):
        x = images(n, 3, 96).transpose(0, 1, 3, 2)  # stored column-major
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x).tobytes())
        (folder / f"{split}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())


def write_notmnist(root: Path, per_letter: int = 5) -> None:
    from PIL import Image

    for letter in "ABCDEFGHIJ":
        folder = root / "notMNIST_small" / letter
        folder.mkdir(parents=True)
        for i in range(per_letter):
            Image.fromarray(images(1, 1, 28)[0, 0]).save(folder / f"{letter}{i}.png")
    (root / "notMNIST_small" / "A" / "broken.png").write_bytes(b"not a png")  # as in the real archive


def write_caltech(root: Path, n_classes: int = 6, per_class: int = 5) -> None:
    from PIL import Image

    base = root / "caltech101" / "101_ObjectCategories"
    for c in range(n_classes):
        folder = base / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = (40 + 3 * i, 30 + 2 * c)  # varied sizes, as in the real set
            Image.fromarray(RNG.integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8)).save(
                folder / f"image_{i:04d}.jpg")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for write in (write_mnist, write_cifar10, write_cifar100, write_svhn, write_stl10, write_notmnist, write_caltech):
        write(root)
    return root


def test_visual_sequence_reads_every_format_into_equal_3x32x32_tasks(image_root: Path) -> None:
    bench = build_benchmark("visual_sequence", {"data_root": str(image_root), **TINY})
    names = [t.name.split(":")[1] for t in bench.tasks]
    assert names == ["mnist", "notmnist", "svhn", "stl10", "cifar10"]
    sizes = {len(t.y_train) for t in bench.tasks}
    assert sizes == {30}  # the smallest training set (STL-10 and CIFAR-10 here: 30)
    for task in bench.tasks:
        assert task.x_train.shape[1:] == (3, 32, 32) and task.x_train.dtype == torch.float32
        assert 0.0 <= float(task.x_train.min()) and float(task.x_train.max()) <= 1.0
        assert set(task.y_train.tolist()) <= set(range(10)) and task.n_classes == 10
    notmnist = bench.tasks[1]
    assert len(notmnist.y_test) == 10  # 1 of 5 per letter (20%); the broken PNG skipped
    reordered = build_benchmark("visual_sequence", {"data_root": str(image_root), **TINY, "order": "cifar10,svhn",
                                                    "train_per_task": 64})
    assert [t.name.split(":")[1] for t in reordered.tasks] == ["cifar10", "svhn"]
    assert {len(t.y_train) for t in reordered.tasks} == {64}  # more than exist: repeats


def test_svhn_zero_and_stl_labels_are_mapped_to_0_9(image_root: Path) -> None:
    from spp_sweep.benchmarks.image_files import load_stl10, load_svhn

    _, y_svhn, _, _ = load_svhn(str(image_root))
    assert y_svhn[9] == 0 and y_svhn[0] == 1  # file label 10 is the digit 0
    x_stl, y_stl, _, _ = load_stl10(str(image_root))
    assert x_stl.shape == (30, 3, 96, 96) and y_stl.min() == 0 and y_stl.max() == 9


def test_split_cifar100_and_caltech101_tasks(image_root: Path) -> None:
    cifar = build_benchmark("split_cifar100", {"data_root": str(image_root), **TINY})
    assert cifar.n_tasks == 20 and all(t.n_classes == 5 for t in cifar.tasks)
    assert {len(t.y_train) for t in cifar.tasks} == {5 * PER_CLASS}
    assert cifar.tasks[3].classes == (15, 16, 17, 18, 19)
    caltech = build_benchmark("caltech101", {"data_root": str(image_root), "class_counts": "2,2,1,1",
                                             "image_size": 32})
    assert [t.n_classes for t in caltech.tasks] == [2, 2, 1, 1] and caltech.input_shape == (3, 32, 32)
    for task in caltech.tasks:  # 7:3 per class: 5 images -> 3.5 + 1.5, rounded: 2 test, 3 train per class
        assert len(task.y_test) == 2 * task.n_classes and len(task.y_train) == 3 * task.n_classes
    again = build_benchmark("caltech101", {"data_root": str(image_root), "class_counts": "2,2,1,1", "image_size": 32})
    assert [t.name for t in again.tasks] == [t.name for t in caltech.tasks]  # seeded subsets


def test_missing_and_corrupt_files_are_one_line_errors(image_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR-100 not found") as missing:
        build_benchmark("split_cifar100", {"data_root": str(tmp_path)})
    assert "\n" not in str(missing.value)
    write_cifar100(tmp_path)
    with pytest.raises(DataError, match="not the published one"):  # the tiny file is no real archive
        build_benchmark("split_cifar100", {"data_root": str(tmp_path)})
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"\x80\x02truncated")
    with pytest.raises(DataError, match="corrupt"):
        build_benchmark("split_cifar100", {"data_root": str(tmp_path), **TINY})
    with pytest.raises(DataError, match="notMNIST"):
        build_benchmark("visual_sequence", {"data_root": str(tmp_path), "order": "notmnist"})
    with pytest.raises(DataError, match="class_counts"):
        build_benchmark("caltech101", {"data_root": str(image_root), "class_counts": "30,25,25,22"})


def test_spp_runs_with_vgg9_on_the_visual_sequence_keeping_bn_statistics_per_task(image_root: Path) -> None:
    config = RunConfig(method="spp", benchmark="visual_sequence", epochs=1, batch_size=16, threads=2,
                       benchmark_options={"data_root": str(image_root), **TINY}, model_options={"channels": [8, 16, 16],
                                                                                        "fc": 32})
    experiment = Experiment(config)
    assert experiment.config.model == "vgg9"
    result = experiment.run()
    assert result.status == "finished" and len(result.accuracy_matrix) == 5
    assert sorted(experiment.model.norm_stats) == [0, 1, 2, 3, 4]
    first = experiment.model.norm_stats[0]
    name = next(iter(first))
    live = dict(experiment.model.named_buffers())[name].clone()
    assert not torch.equal(first[name], live)  # later tasks moved the statistics...
    with experiment.model.norm_stats_of(0):   # ...but task 1 is evaluated with its own
        assert torch.equal(dict(experiment.model.named_buffers())[name], first[name])
    assert torch.equal(dict(experiment.model.named_buffers())[name], live)


def test_spp_runs_with_resnet18_on_tiny_caltech(image_root: Path) -> None:
    config = RunConfig(method="spp", benchmark="caltech101", epochs=1, batch_size=8, threads=2,
                       benchmark_options={"data_root": str(image_root), "class_counts": "2,2", "image_size": 32},
                       model_options={"head_hidden": 16})
    experiment = Experiment(config)
    assert experiment.config.model == "resnet18"
    result = experiment.run()
    assert result.status == "finished" and len(result.accuracy_matrix) == 2
    assert all(0.0 <= a <= 1.0 for row in result.accuracy_matrix for a in row)


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
@pytest.mark.parametrize("name", ["visual_sequence", "split_cifar100", "caltech101"])
def test_the_image_studies_run_on_files_in_the_real_formats(name: str, image_root: Path, tmp_path: Path,
                                                             ray_local) -> None:
    import dataclasses

    from analysis.load import load_trials
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import load_study
    from tests.conftest import REPO

    study = load_study(REPO / "studies" / f"{name}.yaml")
    first = study.methods[0]
    first = dataclasses.replace(first, space={k: dataclasses.replace(d, values=d.values[:1]) if d.is_grid else d
                                              for k, d in first.space.items()})
    small = {"visual_sequence": {"channels": [8, 8, 8], "fc": 16}, "split_cifar100": {"channels": [8, 8, 8], "fc": 16},
             "caltech101": {"head_hidden": 16}}[name]
    options = {"class_counts": "2,2", "image_size": 32} if name == "caltech101" else TINY
    study = dataclasses.replace(
        study, methods=(first,), storage=str(tmp_path), seeds=(0,), final_seeds=(), num_samples=1, gpu=0.0, cpu=1.0,
        # 3 images per class here: a tenth would leave no validation image, so half
        fixed={**study.fixed, "epochs": 1, "model_options": small, "validation": 0.5},
        benchmark_options={**study.benchmark_options, **options},
    )
    outcome = run_sweep(study, SweepOptions(verbose=0, data_root=str(image_root)))
    trials = load_trials(outcome.root)
    assert len(trials) >= 1 and set(trials["status"]) <= {"finished", "diverged"}


def test_a_vgg9_checkpoint_continues_to_the_same_matrix(image_root: Path) -> None:
    config = RunConfig(method="ewc", benchmark="visual_sequence", epochs=1, batch_size=16, threads=2,
                       benchmark_options={"data_root": str(image_root), "order": "cifar10,svhn,mnist", **TINY},
                       model_options={"channels": [4, 8, 8], "fc": 16, "dropout": 0.2})
    whole = Experiment(config).run()
    states = {}
    Experiment(config).run(
        on_task_end=lambda report, exp: states.setdefault(report.task, copy.deepcopy(exp.state_dict())))
    resumed = Experiment(config)
    resumed.load_state_dict(states[0])
    assert sorted(resumed.model.norm_stats) == [0]  # BN statistics travel with the checkpoint
    assert resumed.run().accuracy_matrix == whole.accuracy_matrix


def test_streamed_caltech_trains_to_the_same_matrix_as_in_memory(image_root: Path) -> None:
    from spp_sweep.benchmarks.streaming import ImageFiles

    options = {"data_root": str(image_root), "class_counts": "2,2", "image_size": 32}
    base = dict(method="spp", benchmark="caltech101", epochs=1, batch_size=4, threads=2,
                model_options={"head_hidden": 16})
    memory_experiment = Experiment(RunConfig(**base, benchmark_options=options))
    streamed_experiment = Experiment(RunConfig(**base, benchmark_options={**options, "in_memory": False,
                                                                          "workers": 1}))
    streamed_task, memory_task = streamed_experiment.benchmark.tasks[1], memory_experiment.benchmark.tasks[1]
    assert isinstance(streamed_task.x_train, ImageFiles)
    assert torch.equal(streamed_task.x_train[:], memory_task.x_train)  # the same pixels, decoded on demand
    assert torch.equal(streamed_task.y_test, memory_task.y_test)
    in_memory = memory_experiment.run()
    streamed = streamed_experiment.run()
    np.testing.assert_allclose(streamed.accuracy_matrix, in_memory.accuracy_matrix, atol=0)


def test_sgd_frozen_keeps_the_first_tasks_bn_statistics_on_vgg9(image_root: Path) -> None:
    """SGD-F's trunk is a fixed function after task 1: its weights *and* its batch-norm running
    statistics stay as task 1 left them (train mode would re-estimate them on every task)."""
    config = RunConfig(method="sgd_frozen", benchmark="visual_sequence", epochs=1, batch_size=16, threads=2,
                       benchmark_options={"data_root": str(image_root), **TINY}, model_options={"channels": [8, 16, 16],
                                                                                        "fc": 32})
    experiment = Experiment(config)
    assert experiment.train_task(0)
    after_first = {k: v.clone() for k, v in experiment.model.trunk.state_dict().items()}
    experiment.model.remember_norm_stats(0)
    for task in (1, 2):
        assert experiment.train_task(task)
    now = experiment.model.trunk.state_dict()
    running = [k for k in now if "running_" in k]
    assert running and all(torch.equal(now[k], after_first[k]) for k in now)  # weights and BN statistics
    assert all(torch.equal(experiment.model.norm_stats[2][k], experiment.model.norm_stats[0][k])
               for k in experiment.model.norm_stats[0])
    assert experiment.model.trunk.training is True  # back in train mode for what follows


class _Payload:
    """Pickles to a call of ``Path.touch`` on ``marker``: what a planted file would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_cifar_pickle_runs_nothing(tmp_path: Path) -> None:
    """A file in CIFAR's place is checked against the published MD5, and even unchecked it is read
    by an unpickler that admits arrays only: its payload never runs."""
    write_cifar100(tmp_path)
    marker = tmp_path / "payload-ran"
    batch = {"data": images(100, 3, 32).reshape(100, -1), "fine_labels": [_Payload(marker)] * 100}
    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="not the published one"):
        build_benchmark("split_cifar100", {"data_root": str(tmp_path)})
    with pytest.raises(DataError, match="corrupt .*never holds"):
        build_benchmark("split_cifar100", {"data_root": str(tmp_path), **TINY})
    assert not marker.exists()


def test_mnist_domains_are_the_files_digits_as_two_image_domains_and_a_vae_trains_on_them(tmp_path):
    write_mnist(tmp_path)
    bench = build_benchmark("mnist_domains", {"data_root": str(tmp_path)})
    assert bench.n_tasks == 2 and bench.input_shape == (1, 28, 28) and bench.objective == "elbo"
    assert [t.classes for t in bench.tasks] == [tuple(range(5)), tuple(range(5, 10))]
    raw = (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()[16:]
    first = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 28, 28)[0]  # label 0: task 1's first image
    assert torch.allclose(bench.tasks[0].x_train[0, 0], torch.from_numpy(first / 255.0).float())
    assert len(bench.tasks[0].y_train) == 20 and len(bench.tasks[1].y_test) == 10
    config = RunConfig(method="spp", benchmark="mnist_domains", epochs=1, batch_size=8, seed=0,
                       benchmark_options={"data_root": str(tmp_path)}, model_options={"latent": 2, "fc": 8})
    result = Experiment(config).run()
    assert result.status == "finished" and result.score_name != "accuracy" and not result.higher_is_better
    assert np.isfinite(result.accuracy_matrix).all()

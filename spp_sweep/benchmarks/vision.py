"""The paper's image benchmarks (section 4.2.2 and the supplement), as float tensors in [0, 1].

* ``visual_sequence``: MNIST, notMNIST, SVHN, STL-10, CIFAR-10 (paper order; ``order`` changes
  it), every image as 3x32x32, 10 classes per task, one head per task, the same number of
  training images per task;
* ``split_cifar100``: CIFAR-100 as ``n_tasks`` tasks of ``classes_per_task`` classes;
* ``caltech101``: 4 seeded random class subsets of 30/25/25/22 classes, 7:3 train/test split
  per class, images resized to ``image_size`` (224 in the paper) and scaled to [0, 1]; the
  random horizontal flips of training are done by the model (``flip`` of resnet18), so the
  data stay tensors.

All of them fit in memory at the paper's sizes on a GPU node (visual sequence at 50,000 images
per task: 3 GB; Caltech-101 at 224x224: 5.5 GB), so they are held as tensors on the trial's
device like the MLP benchmarks: no DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from . import image_files
from .base import Benchmark, Inputs, Task, pairs, split_by_classes, stratified_split
from .streaming import ImageFiles

VISUAL_ORDER = ("mnist", "notmnist", "svhn", "stl10", "cifar10")  # section 4.2.2
_READERS: dict[str, Callable[[str | None, bool], image_files.Arrays]] = {
    "mnist": image_files.load_mnist_images,
    "notmnist": image_files.load_notmnist,
    "svhn": image_files.load_svhn,
    "stl10": image_files.load_stl10,
    "cifar10": image_files.load_cifar10,
}


def to_float_images(x: torch.Tensor, size: int, channels: int = 3, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, channels, size, size) in [0, 1]; grey is repeated to RGB."""
    out = torch.empty((len(x), channels, size, size), dtype=torch.float32)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].float().div_(255.0)
        if part.shape[-2:] != (size, size):
            part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = part.clamp_(0.0, 1.0)  # broadcasts grey (1 channel) to RGB
    return out


def _pick(n_available: int, n_wanted: int | None, generator: torch.Generator) -> torch.Tensor:
    """``n_wanted`` indices (all, a random subset, or with repeats when more than exist)."""
    if n_wanted is None or n_wanted == n_available:
        return torch.arange(n_available)
    if n_wanted < n_available:
        return torch.randperm(n_available, generator=generator)[:n_wanted].sort().values
    extra = torch.randint(n_available, (n_wanted - n_available,), generator=generator)
    return torch.cat([torch.arange(n_available), extra])


def visual_sequence(
    data_root: str | None = None,
    download: bool = False,
    order: str | Sequence[str] = ",".join(VISUAL_ORDER),
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    data_seed: int = 0,
    verify_checksums: bool = True,
) -> Benchmark:
    """Five 10-class image datasets in sequence, each as 3x32x32 (paper Figure 3).

    ``train_per_task`` equalises the tasks: by default the smallest training set (STL-10's
    5,000); the paper's 50,000 repeats images of the smaller sets. ``verify_checksums``: the
    CIFAR-10 files must be the published ones (torchvision's MD5s).
    """
    names = [n.strip().lower() for n in (order.split(",") if isinstance(order, str) else order) if n.strip()]
    unknown = [n for n in names if n not in _READERS]
    if unknown or not names:
        raise ConfigError(f"order: unknown dataset(s) {unknown or names}; use a comma list of "
                          f"{', '.join(VISUAL_ORDER)}")
    for key, value in (("train_per_task", train_per_task), ("test_per_task", test_per_task)):
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    raw = {name: image_files.load_cifar10(data_root, download, verify_checksums) if name == "cifar10"
           else _READERS[name](data_root, download) for name in names}
    if train_per_task is None:
        train_per_task = min(len(arrays[1]) for arrays in raw.values())
    generator = torch.Generator().manual_seed(data_seed)
    tasks = []
    for index, name in enumerate(names):
        x_train, y_train, x_test, y_test = raw[name]
        if int(y_train.max()) != 9 or int(y_train.min()) != 0:
            raise DataError(f"{name}: expected labels 0..9, found {int(y_train.min())}..{int(y_train.max())}")
        keep = _pick(len(y_train), train_per_task, generator)
        keep_test = _pick(len(y_test), min(test_per_task or len(y_test), len(y_test)), generator)
        tasks.append(Task(
            name=f"visual_sequence[{index}]:{name}",
            x_train=to_float_images(x_train[keep], 32), y_train=y_train[keep].long(),
            x_test=to_float_images(x_test[keep_test], 32), y_test=y_test[keep_test].long(),
            classes=tuple(range(10 * index, 10 * index + 10)),  # distinct classes for a shared single head
        ))
    return Benchmark("visual_sequence", tuple(tasks), input_shape=(3, 32, 32))


def split_cifar100(
    data_root: str | None = None,
    download: bool = False,
    n_tasks: int = 20,
    classes_per_task: int = 5,
    max_train_per_task: int | None = None,
    data_seed: int = 0,
    verify_checksums: bool = True,
) -> Benchmark:
    """CIFAR-100 incremental (supplement Figure 10): 20 tasks of 5 classes, in class order.
    ``verify_checksums``: the files must be the published ones (torchvision's MD5s)."""
    if n_tasks < 1 or classes_per_task < 1 or n_tasks * classes_per_task > 100:
        raise ConfigError(f"n_tasks x classes_per_task must be between 1 and 100, got {n_tasks} x {classes_per_task}")
    x_train, y_train, x_test, y_test = image_files.load_cifar100(data_root, download, verify_checksums)
    groups = pairs(100, classes_per_task)[:n_tasks]
    wanted = torch.tensor([c for g in groups for c in g])
    train_mask, test_mask = torch.isin(y_train, wanted), torch.isin(y_test, wanted)
    tasks = split_by_classes("split_cifar100", to_float_images(x_train[train_mask], 32), y_train[train_mask],
                             to_float_images(x_test[test_mask], 32), y_test[test_mask], groups)
    if max_train_per_task is not None:
        from .base import limit_per_task

        tasks = limit_per_task(tasks, max_train_per_task, torch.Generator().manual_seed(data_seed + 1))
    return Benchmark("split_cifar100", tuple(tasks), input_shape=(3, 32, 32))


def caltech101(
    data_root: str | None = None,
    download: bool = False,
    class_counts: str | Sequence[int] = "30,25,25,22",
    image_size: int = 224,
    test_fraction: float = 0.3,
    data_seed: int = 0,
    in_memory: bool = True,
    workers: int = 2,
) -> Benchmark:
    """Caltech-101 (supplement Figure 9): seeded random class subsets, 7:3 split per class.

    ``in_memory=False`` keeps the images as files (:class:`streaming.ImageFiles`): training
    batches are decoded by ``workers`` DataLoader processes into pinned memory, for machines
    where 5.5 GB of 224x224 tensors (per trial) do not fit.
    """
    counts = [int(c) for c in (class_counts.split(",") if isinstance(class_counts, str) else class_counts)]
    if not counts or min(counts) < 1 or not 8 <= image_size <= 512 or not 0 < test_fraction < 1 or workers < 0:
        raise ConfigError("caltech101 needs class_counts like 30,25,25,22, image_size in 8..512, "
                          "test_fraction in (0, 1) and workers >= 0")
    base, classes = image_files.caltech_classes(data_root, download)
    if sum(counts) > len(classes):
        raise DataError(f"class_counts {counts} ask for {sum(counts)} classes but {base} holds {len(classes)}")
    generator = torch.Generator().manual_seed(data_seed)
    shuffled = [classes[i] for i in torch.randperm(len(classes), generator=generator)]
    tasks, start = [], 0
    for index, count in enumerate(counts):
        names = shuffled[start:start + count]
        start += count
        if in_memory:
            images = [image_files.read_image_folder(base / name, image_size, "RGB") for name in names]
            sizes = [len(im) for im in images]
        else:
            files = [image_files.image_paths(base / name) for name in names]
            sizes = [len(f) for f in files]
        y = torch.cat([torch.full((n,), label, dtype=torch.long) for label, n in enumerate(sizes)])
        train, test = stratified_split(y, test_fraction, generator)
        x_train: Inputs
        x_test: Inputs
        if in_memory:
            x = torch.cat(images)
            x_train, x_test = to_float_images(x[train], image_size), to_float_images(x[test], image_size)
        else:
            every = ImageFiles(tuple(str(p) for f in files for p in f), image_size, workers)
            x_train, x_test = every.subset(train.tolist()), every.subset(test.tolist())
        tasks.append(Task(name=f"caltech101[{index}]:{count} classes", x_train=x_train, y_train=y[train],
                          x_test=x_test, y_test=y[test], classes=tuple(range(start - count, start))))
    return Benchmark("caltech101", tuple(tasks), input_shape=(3, image_size, image_size))

"""Readers for the image datasets of the paper, in each dataset's own on-disk format.

Each reader returns ``(x_train, y_train, x_test, y_test)`` with images as uint8 tensors
(N, C, H, W) and labels 0..K-1. They read the files directly, so a data root holding the usual
files works offline (CIFAR's pickles are checked against torchvision's published MD5s and read by
an unpickler that admits arrays only: a planted file runs nothing); ``download=True`` first lets torchvision fetch
what it can. A missing or unreadable file is a :class:`DataError` naming it and the fix.

Layouts (under the data root, as torchvision writes them where it has the dataset):
  cifar-10-batches-py/{data_batch_1..5,test_batch}       CIFAR-10 python pickles
  cifar-100-python/{train,test}                          CIFAR-100 python pickles
  svhn/{train_32x32.mat,test_32x32.mat}                  SVHN cropped digits (.mat)
  stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin}   STL-10 binaries
  notMNIST_small/{A..J}/*.png  (or notMNIST_large)       notMNIST letter folders
  caltech101/101_ObjectCategories/<class>/*.jpg          Caltech-101 folder tree
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .mnist import load_mnist, resolve_data_root

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
NOTMNIST_LETTERS = "ABCDEFGHIJ"


def _missing(path: Path, name: str, where: str) -> DataError:
    return DataError(f"{name} not found: {path} is missing; put {where} under the data root "
                     "(--data-root or SPP_DATA_ROOT), or add --download where torchvision can fetch it")


def _corrupt(path: Path, name: str, error: Exception) -> DataError:
    return DataError(f"{name} file {path} is corrupt ({type(error).__name__}: {error}); delete it and fetch it again")


def _download(kind: Callable[..., object], root: Path, **kwargs: object) -> None:
    try:
        kind(root=str(root), download=True, **kwargs)
    except Exception as error:  # no network, a moved mirror: say so in one line
        raise DataError(f"download of {getattr(kind, '__name__', kind)} failed ({error}); "
                        "fetch the files by hand into the data root") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays, and refuses every other global:
    a CIFAR batch is a pickle, and a planted one must not run code (plain pickle.load would)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _known_md5(folder: str) -> dict[str, str]:
    """torchvision's published MD5 of every file of the CIFAR archive in ``folder``."""
    from torchvision.datasets import CIFAR10, CIFAR100

    kind = CIFAR10 if folder == CIFAR10.base_folder else CIFAR100
    return dict(kind.train_list + kind.test_list)


def _cifar(root: Path, folder: str, train_files: list[str], test_file: str, label_key: str, name: str,
           verify: bool = True) -> Arrays:
    def read(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        if not path.exists():
            raise _missing(path, name, folder + "/")
        if verify:
            from torchvision.datasets.utils import check_integrity

            if not check_integrity(str(path), _known_md5(folder)[path.name]):
                raise DataError(f"{name} file {path} is not the published one (its MD5 differs from torchvision's); "
                                "fetch the archive again, or set the benchmark option verify_checksums=false for a "
                                "re-packed copy you trust (it is still read without running code)")
        try:
            with open(path, "rb") as handle:
                batch = _ArrayUnpickler(handle, encoding="latin1").load()
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(batch[label_key], dtype=np.int64)
        except Exception as error:
            raise _corrupt(path, name, error) from None
        if len(data) != len(labels):
            raise _corrupt(path, name, ValueError(f"{len(data)} images but {len(labels)} labels"))
        return torch.from_numpy(data.copy()), torch.from_numpy(labels)

    train = [read(root / folder / f) for f in train_files]
    x_test, y_test = read(root / folder / test_file)
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), x_test, y_test


def load_cifar10(data_root: str | None, download: bool = False, verify: bool = True) -> Arrays:
    """``verify``: refuse files whose MD5 is not torchvision's published one."""
    root = resolve_data_root(data_root)
    if download:
        from torchvision.datasets import CIFAR10

        _download(CIFAR10, root)
    return _cifar(root, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                  "labels", "CIFAR-10", verify)


def load_cifar100(data_root: str | None, download: bool = False, verify: bool = True) -> Arrays:
    """``verify``: refuse files whose MD5 is not torchvision's published one."""
    root = resolve_data_root(data_root)
    if download:
        from torchvision.datasets import CIFAR100

        _download(CIFAR100, root)
    return _cifar(root, "cifar-100-python", ["train"], "test", "fine_labels", "CIFAR-100", verify)


def load_svhn(data_root: str | None, download: bool = False) -> Arrays:
    """SVHN cropped digits; label 10 in the .mat files means the digit 0."""
    from scipy.io import loadmat

    root = resolve_data_root(data_root)
    if download:
        from torchvision.datasets import SVHN

        for split in ("train", "test"):
            _download(SVHN, root / "svhn", split=split)

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = root / "svhn" / f"{split}_32x32.mat"
        if not path.exists():
            raise _missing(path, "SVHN", "svhn/train_32x32.mat and svhn/test_32x32.mat")
        try:
            mat = loadmat(str(path))
            x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)  # (32,32,3,N) -> NCHW
            y = mat["y"].astype(np.int64).reshape(-1) % 10
        except Exception as error:
            raise _corrupt(path, "SVHN", error) from None
        return torch.from_numpy(x), torch.from_numpy(y)

    return (*read("train"), *read("test"))


def load_stl10(data_root: str | None, download: bool = False) -> Arrays:
    """STL-10's labelled train/test binaries (96x96; images stored column-major; labels 1..10)."""
    root = resolve_data_root(data_root)
    if download:
        from torchvision.datasets import STL10

        _download(STL10, root, split="train")

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = root / "stl10_binary" / f"{split}_X.bin", root / "stl10_binary" / f"{split}_y.bin"
        for path in (images, labels):
            if not path.exists():
                raise _missing(path, "STL-10", "stl10_binary/")
        try:
            x = np.fromfile(images, dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
            y = np.fromfile(labels, dtype=np.uint8).astype(np.int64) - 1
        except ValueError as error:
            raise _corrupt(images, "STL-10", error) from None
        if len(x) != len(y) or y.min(initial=0) < 0 or y.max(initial=0) > 9:
            raise _corrupt(labels, "STL-10", ValueError(f"{len(x)} images, {len(y)} labels in 1..10 expected"))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    return (*read("train"), *read("test"))


def image_paths(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name (what the in-memory reader reads too)."""
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise DataError(f"{folder} holds no image file; fetch the dataset again")
    return paths


def read_image_folder(folder: Path, size: int | None, mode: str) -> torch.Tensor:
    """Every readable image file of a folder, sorted by name, as uint8 (N, C, size, size)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            with Image.open(path) as opened:
                image = opened.convert(mode)
                if size is not None and image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            continue  # the public notMNIST archives hold a few unreadable files: skipped, as everyone does
        images.append(array if array.ndim == 3 else array[:, :, None])
    if not images:
        raise DataError(f"{folder} holds no readable image; fetch the dataset again")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def load_notmnist(data_root: str | None, download: bool = False, test_fraction: float = 0.2,
                  data_seed: int = 0) -> Arrays:
    """notMNIST letters A-J (28x28 grey PNGs), split train/test per letter at ``test_fraction``.

    Not in torchvision: get notMNIST_small.tar.gz (or _large) from Yaroslav Bulatov's page
    (http://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html) and unpack it in the root.
    """
    root = resolve_data_root(data_root)
    if download:
        raise DataError("notMNIST cannot be downloaded by torchvision; unpack notMNIST_small.tar.gz from "
                        "yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html into the data root")
    base = next((root / name for name in ("notMNIST_small", "notMNIST_large") if (root / name).is_dir()), None)
    if base is None:
        raise _missing(root / "notMNIST_small", "notMNIST", "notMNIST_small/A..J/ (unpacked notMNIST_small.tar.gz)")
    generator = torch.Generator().manual_seed(data_seed)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for label, letter in enumerate(NOTMNIST_LETTERS):
        if not (base / letter).is_dir():
            raise _missing(base / letter, "notMNIST", f"{base.name}/{letter}/")
        x = read_image_folder(base / letter, 28, "L")
        order = torch.randperm(len(x), generator=generator)
        n_test = max(1, int(round(test_fraction * len(x))))
        y = torch.full((len(x),), label, dtype=torch.long)
        parts.append((x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def load_mnist_images(data_root: str | None, download: bool = False) -> Arrays:
    """MNIST as uint8 (N, 1, 28, 28), from the same files as split/permuted MNIST."""
    x_train, y_train, x_test, y_test = load_mnist(data_root, download)
    as_images = lambda x: x.mul(255).round().to(torch.uint8).reshape(-1, 1, 28, 28)  # noqa: E731
    return as_images(x_train), y_train, as_images(x_test), y_test


def caltech_classes(data_root: str | None, download: bool = False) -> tuple[Path, list[str]]:
    """The Caltech-101 category folders (all of them, BACKGROUND_Google included: 102)."""
    root = resolve_data_root(data_root)
    if download:
        from torchvision.datasets import Caltech101

        _download(Caltech101, root)
    base = root / "caltech101" / "101_ObjectCategories"
    if not base.is_dir():
        raise _missing(base, "Caltech-101", "caltech101/101_ObjectCategories/<class>/*.jpg")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{base} holds no class folder; unpack 101_ObjectCategories.tar.gz there")
    return base, classes

"""Section 4.2.4's two image domains for the continual VAE (Figure 5): CelebA faces, then
anime faces, both center-cropped to squares and resized to ``image_size`` (the paper's 96).

On-disk formats, read offline from the data root:
  celeba/img_align_celeba/*.jpg, celeba/list_eval_partition.txt   torchvision's CelebA layout;
      the partition file's lines are "000001.jpg 0" (0 train, 1 valid, 2 test): train here is
      partition 0, test partition 2 (1 is left to the validation split of the run settings)
  anime_faces/**/*.{png,jpg,jpeg}                                   an image folder (no labels);
      a seeded ``test_fraction`` of it is the test set
Images are held in memory as float tensors in [0, 1], so ``max_train_per_task`` and
``max_test_per_task`` bound the memory (3 x 96 x 96 floats = 110 KB per image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import Benchmark, Task
from .mnist import resolve_data_root
from .streaming import check_tree, unreadable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _square(path: Path, size: int) -> torch.Tensor:
    """One image as (3, size, size) in [0, 1]: the central square, resized with antialiasing."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    except (OSError, Image.DecompressionBombError) as error:  # PIL's bomb guard is no OSError
        raise unreadable(path, error) from None


def _stack(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack([_square(p, size) for p in paths]) if paths else torch.zeros(0, 3, size, size)


def _celeba(root: Path, size: int, max_train: int, max_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    folder, partition = root / "celeba" / "img_align_celeba", root / "celeba" / "list_eval_partition.txt"
    for path in (folder, partition):
        if not path.exists():
            raise DataError(f"CelebA not found: {path} is missing; put celeba/img_align_celeba/ and "
                            "celeba/list_eval_partition.txt under the data root (--data-root or SPP_DATA_ROOT)")
    split: dict[int, list[Path]] = {0: [], 2: []}
    for number, line in enumerate(partition.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{partition} line {number} is not 'FILE PARTITION' with partition 0, 1 or 2: {line!r}")
        if int(parts[1]) in split:
            split[int(parts[1])].append(folder / parts[0])
    missing = [p for p in split[0][:max_train] + split[2][:max_test] if not p.exists()]
    if missing:
        raise DataError(f"CelebA image {missing[0]} is listed in {partition.name} but missing; fetch the whole folder")
    return _stack(split[0][:max_train], size), _stack(split[2][:max_test], size)


def _anime(root: Path, size: int, max_train: int, max_test: int, test_fraction: float,
           seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    folder = root / "anime_faces"
    if not folder.is_dir():
        raise DataError(f"anime faces not found: {folder} is missing; put the images under anime_faces/ in the "
                        "data root (--data-root or SPP_DATA_ROOT)")
    check_tree(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise DataError(f"{folder} holds {len(paths)} images (.png/.jpg); it needs at least 2 (train and test)")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, int(round(len(paths) * test_fraction)))
    test, train = [paths[i] for i in order[:n_test]], [paths[i] for i in order[n_test:]]
    return _stack(train[:max_train], size), _stack(test[:max_test], size)


def faces_to_anime(data_root: str | None = None, image_size: int = 96, max_train_per_task: int = 5000,
                   max_test_per_task: int = 500, test_fraction: float = 0.1, data_seed: int = 0) -> Benchmark:
    """CelebA faces, then anime faces (section 4.2.4), for the continual VAE."""
    if image_size < 8 or image_size % 4 or max_train_per_task < 1 or max_test_per_task < 1 or \
            not 0 < test_fraction < 1:
        raise ConfigError("faces_to_anime needs image_size a multiple of 4 (>= 8), max_train_per_task and "
                          "max_test_per_task >= 1 and test_fraction in (0, 1)")
    root = resolve_data_root(data_root)
    domains = [("celeba", _celeba(root, image_size, max_train_per_task, max_test_per_task)),
               ("anime", _anime(root, image_size, max_train_per_task, max_test_per_task, test_fraction, data_seed))]
    tasks = []
    for index, (name, (train, test)) in enumerate(domains):
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"faces_to_anime: {name} has {len(train)} training and {len(test)} test images; "
                            "it needs both")
        # one pseudo-class per domain: labels are unused by the ELBO, but the engine keeps them
        tasks.append(Task(f"faces_to_anime[{index}]:{name}", train, torch.zeros(len(train), dtype=torch.long),
                          test, torch.zeros(len(test), dtype=torch.long), classes=(index,)))
    return Benchmark("faces_to_anime", tuple(tasks), input_shape=(3, image_size, image_size), objective="elbo")

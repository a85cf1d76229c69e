"""Image sets too large for memory: decoded from disk batch by batch.

:class:`ImageFiles` stands where a task's image tensor would be. It supports what the engine
and the methods use of a tensor (``len``, indexing by slice or index tensor, ``.to(device)``)
and decodes only the images asked for. In training, the engine streams its batches through a
``torch.utils.data.DataLoader`` with worker processes and pinned memory
(:func:`batch_loader`), so decoding overlaps the GPU's work; importance passes and
evaluation index it directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

MAX_TREE_ENTRIES = 5_000_000  # files and folders an image tree may hold (a runaway tree is refused, not walked)


def check_tree(root: Path) -> None:
    """Refuse, in one line, an image tree that loops through a symbolic link (torchvision's
    ImageFolder walks with followlinks=True and would never end) or holds millions of entries."""
    seen: dict[tuple[int, int], str] = {}
    entries = 0
    for folder, subfolders, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            raise DataError(f"{folder} is {seen[key]} again through a symbolic link (a loop); remove the link")
        seen[key] = folder
        entries += len(subfolders) + len(files)
        if entries > MAX_TREE_ENTRIES:
            raise DataError(f"{root} holds more than {MAX_TREE_ENTRIES:,} files and folders; give the dataset's folder")


def unreadable(path: object, error: Exception) -> DataError:
    """The one line for an image that cannot be decoded, a decompression bomb included."""
    return DataError(f"image {path} is unreadable ({type(error).__name__}: {error}); delete or replace it")


def decode(path: str, size: int) -> torch.Tensor:
    """One image file -> float (3, size, size) in [0, 1] (PIL, bilinear resize)."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as error:  # PIL's bomb guard is no OSError
        raise unreadable(path, error) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


@dataclass(frozen=True)
class ImageFiles:
    """A lazily decoded stack of images of one size, standing in for an (N, 3, size, size) tensor."""

    paths: tuple[str, ...]
    size: int
    workers: int = 2  # DataLoader worker processes that decode training batches
    device: torch.device = field(default=torch.device("cpu"))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size, self.size)

    def to(self, device: torch.device | str) -> ImageFiles:
        return replace(self, device=torch.device(device))

    def __getitem__(self, key: int | slice | torch.Tensor | Sequence[int]) -> torch.Tensor:
        if isinstance(key, int):
            return decode(self.paths[key], self.size).to(self.device)
        if isinstance(key, slice):
            indices: Sequence[int] = range(*key.indices(len(self.paths)))
        else:
            indices = torch.as_tensor(key).flatten().tolist()
        if not indices:
            return torch.empty((0, 3, self.size, self.size), device=self.device)
        return torch.stack([decode(self.paths[i], self.size) for i in indices]).to(self.device)

    def subset(self, indices: Sequence[int]) -> ImageFiles:
        return replace(self, paths=tuple(self.paths[int(i)] for i in indices))


class _Batches(torch.utils.data.Dataset):
    """Item k = the k-th mini-batch of a schedule, decoded in a worker process."""

    def __init__(self, images: ImageFiles, batches: list[torch.Tensor]):
        self.images = images.to("cpu")
        self.batches = [b.cpu() for b in batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.images[self.batches[k]]


def batch_loader(images: ImageFiles, batches: list[torch.Tensor], workers: int, pin_memory: bool):
    """Decoded mini-batches in schedule order, prefetched by ``workers`` processes.

    The loader gets its own generator so that streaming draws nothing from torch's global RNG
    (dropout and flips see the same random numbers as with in-memory data).
    """
    return torch.utils.data.DataLoader(
        _Batches(images, batches), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin_memory, generator=torch.Generator(), persistent_workers=False,
    )

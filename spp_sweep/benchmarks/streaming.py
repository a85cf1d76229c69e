"""Image sets too large for memory: decoded from disk batch by batch.

:class:`ImageFiles` stands where a task's image tensor would be. It supports what the engine
and the methods use of a tensor (``len``, indexing by slice or index tensor, ``.to(device)``)
and decodes only the images asked for. In training, the engine streams its batches through a
``torch.utils.data.DataLoader`` with worker processes and pinned memory
(:func:`batch_loader`), so decoding overlaps the GPU's work; importance passes and
evaluation index it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError


def decode(path: str, size: int) -> torch.Tensor:
    """One image file -> float (3, size, size) in [0, 1] (PIL, bilinear resize)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"image {path} is unreadable ({error}); delete it or fetch the dataset again") from None
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

    def to(self, device: torch.device | str) -> "ImageFiles":
        return replace(self, device=torch.device(device))

    def __getitem__(self, key: int | slice | torch.Tensor | Sequence[int]) -> torch.Tensor:
        if isinstance(key, int):
            return decode(self.paths[key], self.size).to(self.device)
        if isinstance(key, slice):
            indices = range(*key.indices(len(self.paths)))
        else:
            indices = torch.as_tensor(key).flatten().tolist()
        if not indices:
            return torch.empty((0, 3, self.size, self.size), device=self.device)
        return torch.stack([decode(self.paths[i], self.size) for i in indices]).to(self.device)

    def subset(self, indices: Sequence[int]) -> "ImageFiles":
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

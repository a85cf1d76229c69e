"""Make a "new benchmark" to try `spp-sweep recommend` on, from data that ships with scikit-learn.

Writes my_digits.npz (x_train, y_train, x_test, y_test: 8x8 digits in [0, 1]) and
my_digits_png/digitK/*.png (the same digits as an image folder tree) into the current folder,
or into the folder given as the first argument. No download.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(out: Path) -> None:
    digits = load_digits()
    x, y = digits.images.astype("float32") / 16, digits.target
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1300], order[1300:]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "my_digits.npz", x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    for index, (image, label) in enumerate(zip(digits.images, y)):
        folder = out / "my_digits_png" / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype("uint8")).save(folder / f"{index:04d}.png")
    print(f"wrote {out / 'my_digits.npz'} ({len(train)} train, {len(test)} test) and {out / 'my_digits_png'}/")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))

"""The report's part for generative runs (section 4.2.4, Figure 5): what a VAE still draws of
task 1 after learning task 2, with and without a method, from the trials' ``pictures.npz``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spp_sweep.results.load import load_pictures

from .figures import save
from .style import display_name, look

SCORE_NOTE = ("The matrix holds each task's **negative ELBO per image** (nats; `objectives.NegativeELBO`): "
              "**lower is better**. ACC is its mean over the tasks after the last one, BWT > 0 is forgetting "
              "(the loss on old tasks rose), FWT < 0 a task that starts below the untrained network's loss.")


Row = tuple[str, str, np.ndarray, "np.ndarray | None"]  # label, its colour, reconstructions, samples


def figure5_rows(trials: pd.DataFrame) -> list[Row]:
    """Rows of Figure 5: task 1's test images, then after task 1 (the first finished trial of
    fine-tuning, or of any method: before task 2 every method is the same network), then each
    method after the last task, labelled in its colour."""
    rows: list[Row] = []
    finished = trials[trials["status"] == "finished"].sort_values("seed")
    pictures, configs, seeds = {}, {}, {}
    for _, trial in finished.drop_duplicates("method").iterrows():
        saved = load_pictures(trial["path"])
        if saved:
            pictures[trial["method"]] = saved
            configs[trial["method"]] = str(trial.get("config") or "")
            seeds[trial["method"]] = trial.get("seed")
    if not pictures:
        return []
    first = pictures.get("finetune") or next(iter(pictures.values()))
    last = max(int(key.split("/")[0][4:]) for key in first if key.startswith("task"))
    rows.append(("task 1 test images", "black", first["task0/originals"], None))
    rows.append(("after task 1", "black", first["task0/reconstructions"], _task1_samples(first, 0)))
    for method, saved in pictures.items():
        config = configs[method] if configs[method] not in ("", "-", "nan") else ""
        seed = "" if pd.isna(seeds[method]) else f"seed {int(seeds[method])}"
        detail = ", ".join(part for part in (config, seed) if part)
        rows.append((f"after task {last + 1}: {display_name(method)}" + (f" ({detail})" if detail else ""),
                     look(method).colour,
                     saved[f"task{last}/reconstructions"], _task1_samples(saved, last)))
    return rows


def _task1_samples(saved: dict, task: int) -> np.ndarray:
    """Samples from task 1's own latent statistics (objectives.NegativeELBO.pictures); prior
    samples for runs saved before those were kept."""
    return saved.get(f"task{task}/task1_samples", saved[f"task{task}/samples"])


def figure5(rows: list[Row], out: Path) -> Path | None:
    """Figure 5: reconstructions of task 1's test images (left) and samples of fixed latent
    codes (right), one row per state of the network."""
    if not rows:
        return None
    n = rows[0][2].shape[0]
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * 0.55 * n + 1.5, 0.75 * len(rows) + 0.9), squeeze=False)
    for r, (label, colour, reconstructions, samples) in enumerate(rows):
        for c, images in enumerate((reconstructions, samples)):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if images is None:
                continue
            ax.imshow(_strip(images), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8, color=colour)
    axes[0, 0].set_title("reconstructions of task 1's test images (below)", fontsize=9, pad=6)
    axes[min(1, len(rows) - 1), 1].set_title("samples of task 1: μ₁ + σ₁·ε, task 1's latent statistics\n"
                                             "(the same ε in every row)", fontsize=9, pad=6)
    fig.tight_layout()
    return save(fig, out, "figure5_generations")


def _strip(images: np.ndarray) -> np.ndarray:
    """(n, c, h, w) in [0, 1] -> one (h, n·w[, c]) image with a 1-pixel white gap between them."""
    n, c, h, w = images.shape
    gap = np.ones((c, h, 1))
    tiles = [np.concatenate([img, gap], axis=2) for img in images]
    strip = np.concatenate(tiles, axis=2)[:, :, :-1]
    return strip[0] if c == 1 else strip.transpose(1, 2, 0)


def generative_lines(trials: pd.DataFrame, out: Path) -> list[str]:
    """Markdown lines (and the figure in ``out``) for trials that saved pictures."""
    path = figure5(figure5_rows(trials), out)
    if path is None:
        return []
    return ["## What the generator keeps of task 1 (Figure 5)", "",
            "Left: the first test images of task 1 and their reconstructions through task 1's latent head; right: "
            "samples of task 1: one fixed draw ε ~ N(0, I) mapped to μ₁ + σ₁·ε, with μ₁, σ₁ the mean and standard "
            "deviation of task 1's posterior means over its training images (through the current encoder), then "
            "decoded. Prior samples would show the shared decoder, not task 1: every head is pulled to the same "
            "N(0, I). One row per state: after task 1, then each method (its first seed) after the last task.", "",
            f"![Figure 5]({path.name}) ([PDF]({path.with_suffix('.pdf').name}))", ""]

"""Figures 7(b), 7(c) and 8 of section 4.2.5 from the tables of analysis/parameters.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, PowerNorm

from .figures import save
from .style import display_name, look


def per_layer(table: pd.DataFrame, column: str, ylabel: str, title: str, out: Path, stem: str,
              log: bool = False) -> Path | None:
    """One line per method across the trunk's layers (input side first), mean ± std over seeds."""
    if table.empty:
        return None
    layer_order = list(dict.fromkeys(table["layer"]))
    fig, ax = plt.subplots(figsize=(1.3 * len(layer_order) + 3.2, 3.8))
    x = np.arange(len(layer_order))
    methods = list(dict.fromkeys(table["method"]))
    for index, (method, group) in enumerate(table.groupby("method", sort=False)):
        stats = group.groupby("layer")[column].agg(["mean", "std", "count"]).reindex(layer_order)
        style = look(method)
        seeds = int(stats["count"].max())
        shift = 0.06 * (index - (len(methods) - 1) / 2)  # error bars side by side, not on top of each other
        ax.errorbar(x + shift, stats["mean"], yerr=stats["std"].fillna(0) if seeds > 1 else None, color=style.colour,
                    marker=style.marker, capsize=3, linewidth=1.6, label=f"{display_name(method)} ({seeds} seed"
                    f"{'s' if seeds > 1 else ''})")
    ax.set_xticks(x)
    ax.set_xticklabels([_layer_label(name, i) for i, name in enumerate(layer_order)], fontsize=8)
    ax.set_xlabel("layer (input side first)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, out, stem)


def change_heatmaps(panels: list[tuple[str, np.ndarray, np.ndarray]], layer: str, first: int, second: int,
                    out: Path, stem: str = "parameter_change_heatmaps", crop: int = 64) -> Path | None:
    """Figure 8: per method, −|θ_second − θ_first| of ``layer`` beside task ``first``'s importance.

    As the paper's caption: the horizontal axis is the layer's output units, the vertical its
    input units. Units that are dead in every panel (zero importance for all their weights, e.g.
    ReLUs that never fire on task 1) are left out, with their count in the title: they are the
    same for every method and would fill the picture. A layer wider than ``crop`` then shows its
    first crop × crop block (said in the title). Every method's panel of a column shares one
    colour scale, so a colour means the same change (importance) in every row."""
    if not panels:
        return None
    alive_out = np.any([np.any(importance != 0, axis=1) for _, _, importance in panels], axis=0)
    alive_in = np.any([np.any(importance != 0, axis=0) for _, _, importance in panels], axis=0)
    dead = f"{int((~alive_out).sum())} output and {int((~alive_in).sum())} input units dead in every panel left out"
    # (input, output): the paper's axes, vertical input units and horizontal output units
    panels = [(method, change[alive_out][:, alive_in].T, importance[alive_out][:, alive_in].T)
              for method, change, importance in panels]
    lowest = min(float(change[:crop, :crop].min()) for _, change, _ in panels)
    highest = max(float(importance[:crop, :crop].max()) for _, _, importance in panels)
    fig, axes = plt.subplots(len(panels), 2, figsize=(9.2, 3.9 * len(panels)), squeeze=False)
    for row, (method, change, importance) in enumerate(panels):
        shape = change.shape
        change, importance = change[:crop, :crop], importance[:crop, :crop]
        shown = "" if change.shape == shape else \
            f" (first {change.shape[0]}×{change.shape[1]} of {shape[0]}×{shape[1]})"
        for ax, values, norm, label in [
            (axes[row, 0], change, Normalize(lowest, 0.0), f"−|θ after task {second + 1} − θ after task {first + 1}|"),
            # importances are heavy-tailed: a square-root scale shows more than the few largest
            (axes[row, 1], importance, PowerNorm(0.5, 0.0, highest),
             f"importance after task {first + 1} (SPP's measure, √ scale)"),
        ]:
            image = ax.imshow(values, cmap="coolwarm", norm=norm, aspect="auto", interpolation="nearest")
            fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02)
            ax.set_title(f"{display_name(method)}: {label}{shown}", fontsize=8.5)
            ax.set_xlabel("output unit (live units only)")
            ax.set_ylabel("input unit (live units only)")
    fig.suptitle(f"Layer {layer}: warm = unchanged (left) / important (right); {dead}", y=1.0, fontsize=10)
    fig.tight_layout()
    return save(fig, out, stem)


def _layer_label(name: str, index: int) -> str:
    return f"{index + 1}\n{name.rsplit('.', 1)[0]}"

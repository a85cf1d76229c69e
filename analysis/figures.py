"""Seaborn figures of a sweep, each saved as PNG (for report.md) and PDF (for a paper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .style import STEP_LINES, display_name, look  # noqa: E402

_PANELS = [("acc", "ACC"), ("fwt", "FWT"), ("bwt", "BWT")]


def save(fig: plt.Figure, out: Path, stem: str) -> Path:
    """The figure as PNG and PDF; the PDF without its creation date, so that a report drawn again
    from the same results leaves committed files unchanged."""
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=130, bbox_inches="tight")
    fig.savefig(out / f"{stem}.pdf", bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return out / f"{stem}.png"


def _palette(methods: list[str]) -> dict[str, str]:
    """Display name -> the method's fixed colour (analysis/style.py), for seaborn's hue."""
    return {display_name(m): look(m).colour for m in methods}


def _baselines(trials: pd.DataFrame, column: str) -> list[tuple[str, float]]:
    """(method, mean) of the reference lines a panel gets: fine-tuning everywhere, joint for ACC."""
    lines = []
    for method in ("finetune", "joint"):
        if method == "joint" and not column.endswith("acc"):  # joint trains all tasks at once: no BWT/FWT curve
            continue
        rows = trials[(trials["method"] == method) & (trials["status"] == "finished")]
        if column in rows and rows[column].notna().any():
            lines.append((method, float(rows[column].mean())))
    return lines


# The reference lines: fine-tuning dotted, joint dash-dotted, so they differ in more than weight.
REFERENCE_LINES: dict[str, Any] = {"finetune": ":", "joint": "-."}


def _series_points(group: pd.DataFrame, parameter: str, column: str) -> pd.DataFrame:
    """Per λ: seeds run (n), finished (k), mean and std of ``column`` over the finished ones."""
    done = group[group["status"].isin(["finished", "diverged"])]
    finished = done[done["status"] == "finished"]
    stats = finished.groupby(parameter)[column].agg(["mean", "std"])
    counts = done.groupby(parameter)["status"].agg(n="size", k=lambda s: int((s == "finished").sum()))
    counts = counts.astype({"n": int, "k": int})  # an empty group (only unfinished trials) stays numeric
    return counts.join(stats).reset_index().sort_values(parameter)


def lambda_curve(trials: pd.DataFrame, out: Path, fwt_column: str = "fwt", parameter: str = "lam",
                 panels: list[tuple[str, str]] | None = None, stem: str = "lambda_robustness",
                 band: tuple[float, float, str] | None = None, mark: tuple[float, str] | None = None,
                 heading: str = "λ robustness", axis: str = "λ") -> Path | None:
    """Figure 4: ACC, FWT and BWT against λ (log axis), mean ± std over seeds, per method
    (and per penalty step, dashed for the implicit one, where a sweep ran both).

    Reads like the paper's figure with what a reviewer needs beside it: y-limits hold the means
    of the points where every seed finished and their ordinary std bands whole; only a band far
    wider than the panel's typical one (a seed gone astray, std over 3× the median) is clipped
    rather than stretching the axis, except where the seeds' median spread exceeds every
    difference between the means (a metric that is noise on this sweep): there every band is
    shown, not a fill that covers the panel as if it were a region; a
    point where some seeds diverged is hollow (its mean is
    over the survivors, "k/n" in the strip below, and no line passes through it; beyond the
    limits, it sits at the edge, pointing past it, with its value); λ values where
    every seed diverged sit in the strip under each panel, never among the data (where none
    diverged the strip says so, and the legend has no keys for such marks); fine-tuning (and
    joint, on ACC) are the dotted reference lines. ``panels`` (column, title) replaces the three;
    ``parameter`` is the swept column (a replay buffer's ``memory`` too), ``axis`` its name on the x axis.
    ``band`` (low, high, label) shades a λ range in every panel (a stable region, a claimed one)
    and ``mark`` (λ, label) draws a vertical line at a chosen value; both go in the legend.
    """
    from .robustness import VARIANT, swept_over

    swept = swept_over(trials, parameter)
    # a curve needs a method (and step) run at two values at least: methods each at one chosen
    # λ (a final study) are points with no curve between them, and their bands have no width
    if swept.empty or swept.groupby(["method", VARIANT])[parameter].nunique().max() < 2:
        return None
    series = list(dict.fromkeys(zip(swept["method"], swept[VARIANT])))
    two_steps = len({step for _, step in series if step != "-"}) > 1
    label = lambda m, s: display_name(m, s if two_steps else None)  # noqa: E731
    # distinct seeds, not rows: a seed trained by two phases is one observation
    n_seeds = int(swept.groupby(["method", VARIANT, parameter])["seed"].nunique().max()) if "seed" in swept \
        else int(swept.groupby(["method", VARIANT, parameter]).size().max())
    custom = panels is not None
    fwt_name = "paper eq. 7" if fwt_column == "fwt_paper" else "standard"
    panels = panels or [(fwt_column if c == "fwt" else c, f"{t} ({fwt_name})"
                         if c == "fwt" else t) for c, t in _PANELS]
    strip_height = 0.22 * len(series) + 0.3
    width = 4.6 * len(panels) + 2.4  # the last 2.4 inches hold the legend
    fig = plt.figure(figsize=(width, 3.9 + strip_height))
    grid = fig.add_gridspec(2, len(panels), height_ratios=[3.9, strip_height], hspace=0.05, wspace=0.3,
                            left=0.9 / width, right=1 - 2.4 / width)
    xs = np.sort(swept[parameter].unique().astype(float))
    any_diverged = False
    for p, (column, title) in enumerate(panels):
        ax = fig.add_subplot(grid[0, p])
        strip = fig.add_subplot(grid[1, p], sharex=ax)
        full_values, widest, spreads, bands = [], 0.0, [], []
        survivors: list[tuple[float, float, str]] = []  # (λ, mean of survivors, colour) of hollow points
        for row, (method, step) in enumerate(series):
            style = look(method)
            points = _series_points(swept[(swept["method"] == method) & (swept[VARIANT] == step)], parameter, column)
            alive = points[points["k"] > 0]
            full = alive[alive["k"] == alive["n"]]
            line = STEP_LINES.get(step, "-")
            # the line joins only points where every seed finished: a survivors' mean is no point on it
            ax.plot(full[parameter], full["mean"], color=style.colour, linestyle=line, linewidth=1.6, zorder=3)
            ax.fill_between(full[parameter], full["mean"] - full["std"].fillna(0), full["mean"] + full["std"].fillna(0),
                            color=style.colour, alpha=0.12, linewidth=0, zorder=2)
            ax.scatter(full[parameter], full["mean"], color=style.colour, marker=style.marker, s=26, zorder=4)
            partial = alive[alive["k"] < alive["n"]]
            ax.scatter(partial[parameter], partial["mean"], facecolors="white", edgecolors=style.colour,
                       marker=style.marker, s=30, linewidths=1.3, zorder=5)
            survivors += [(x, y, style.colour) for x, y in zip(partial[parameter], partial["mean"], strict=True)]
            full_values += list(full["mean"])
            widest = max([widest, *full["std"].dropna()])
            spreads += list(full["std"].dropna())
            bands += list(zip(full["mean"], full["std"].fillna(0)))
            dead = points[points["k"] == 0][parameter]
            any_diverged = any_diverged or bool((points["k"] < points["n"]).any())
            strip.scatter(dead, [row] * len(dead), marker="x", color=style.colour, s=30, linewidths=1.4)
            for _, point in partial.iterrows():
                # the strip counts what it is named for: diverged seeds of all seeds run
                strip.text(point[parameter], row, f"{int(point['n'] - point['k'])}/{int(point['n'])}",
                           color=style.colour, fontsize=6.5, ha="center", va="center")
        if band is not None:
            ax.axvspan(band[0], band[1], color="#bbbbbb", alpha=0.25, linewidth=0, zorder=0)
        if mark is not None:
            ax.axvline(mark[0], color="#333333", linestyle="--", linewidth=1.1, zorder=1)
        for method, value in _baselines(trials, column):
            ax.axhline(value, linestyle=REFERENCE_LINES[method], linewidth=1.3, color=look(method).colour, zorder=1)
            full_values.append(value)
        finite = [v for v in full_values if np.isfinite(v)]
        if finite:
            low, high = min(finite), max(finite)
            typical = float(np.median(spreads)) if spreads else 0.0
            # the seeds' typical spread exceeds every difference between λ (a metric that is noise
            # here, e.g. a near-zero FWT): show every band; otherwise the ordinary bands whole and
            # an astray seed's band (std > 3× the median) clipped, so it cannot flatten the curve
            shown = [(m, s) for m, s in bands if typical > high - low or s <= 3 * typical]
            if shown:
                low = min(low, *(m - s for m, s in shown))
                high = max(high, *(m + s for m, s in shown))
            # every mean equal (a metric no setting changes): show the spread, not a sliver of it
            pad = 0.08 * (high - low) if high - low > 1e-9 * max(1.0, abs(high)) else max(0.01, 1.2 * widest)
            ax.set_ylim(low - pad, high + pad)
            _mark_outside(ax, survivors)
        else:  # nothing finished on every seed: no axis values that could be read as data
            ax.set_yticks([])
            ax.text(0.5, 0.5, f"no {axis} where every seed finished", transform=ax.transAxes, ha="center",
                    va="center", color="grey")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_ylabel(title if custom else column.upper().replace("_PAPER", " (paper)"))
        ax.tick_params(labelbottom=False)
        ax.grid(True, which="major", alpha=0.3)
        strip.set_ylim(len(series) - 0.5, -0.5)
        strip.set_yticks(range(len(series)))
        strip.set_yticklabels([label(m, s) for m, s in series] if p == 0 else [], fontsize=7)
        strip.tick_params(axis="y", length=0)
        strip.set_xlim(xs[0] / 1.6, xs[-1] * 1.6)
        strip.set_xlabel(axis)
        if p == 0:
            strip.set_ylabel("diverged", fontsize=8)
        if not any_diverged:  # an empty strip would read as missing data: say what it holds
            strip.text(0.5, 0.5, "no seed diverged", transform=strip.transAxes, ha="center", va="center",
                       color="grey", fontsize=8)
        for spine in ("top", "right"):
            strip.spines[spine].set_visible(False)
    handles: list[Artist] = [Line2D([], [], color=look(m).colour, marker=look(m).marker,
                                    linestyle=STEP_LINES.get(s, "-"), label=label(m, s)) for m, s in series]
    handles += [Line2D([], [], color=look(m).colour, linestyle=REFERENCE_LINES[m],
                       label=f"{look(m).name} (reference)")
                for m in ("finetune", "joint") if (trials["method"] == m).any()]
    if band is not None:
        handles.append(Patch(facecolor="#bbbbbb", alpha=0.5, label=band[2]))
    if mark is not None:
        handles.append(Line2D([], [], color="#333333", linestyle="--", label=mark[1]))
    if any_diverged:  # the keys of marks that are drawn, only
        handles += [Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="",
                           label="some seeds diverged\n(mean of survivors)"),
                    Line2D([], [], color="grey", marker="x", linestyle="", label="all seeds diverged"),
                    Line2D([], [], color="none", label="k/n in the strip: k of n\nseeds diverged")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1 - 2.3 / width, 0.55), fontsize=8, frameon=False,
               handlelength=3.2)
    fig.suptitle(f"{heading}: mean ± std over {n_seeds} seeds" if n_seeds > 1 else
                 f"{heading}: one seed per {axis} (no spread shown)", y=0.99)
    return save(fig, out, stem)


def _mark_outside(ax: plt.Axes, points: list[tuple[float, float, str]]) -> None:
    """Survivors' means beyond the y-limits (seeds that ended at chance beside ones that
    diverged) drawn at the edge they lie past, hollow, pointing there, with their value: the
    limits stay the curves', and no point is silently off the panel."""
    bottom, top = ax.get_ylim()
    for x, y, colour in points:
        if bottom <= y <= top or not np.isfinite(y):
            continue
        edge, marker, va = (bottom, "v", "bottom") if y < bottom else (top, "^", "top")
        ax.scatter([x], [edge], marker=marker, facecolors="white", edgecolors=colour, s=34, linewidths=1.3,
                   zorder=5, clip_on=False)
        ax.annotate(f"{y:.3g}", (x, edge), xytext=(0, 6 if va == "bottom" else -6), textcoords="offset points",
                    ha="center", va=va, fontsize=6.5, color=colour)


def accuracy_heatmaps(matrices: pd.DataFrame, best_trials: pd.DataFrame, out: Path,
                      scale: str | None = None) -> Path | None:
    """P[j, i] of each method's best configuration (mean over its seeds), side by side.

    Only the cells of tasks already trained (i <= j) are coloured, on a scale spanning their
    values (from the lowest, rounded down to a tenth, to 1), so 0.83 and 1.00 look different;
    a cell of a task not trained yet (i > j, what the standard FWT reads) keeps its number in
    grey on a grey ground: it is the untrained head's guess, not a result of learning.
    ``scale="loss"``: the matrix holds a loss (a VAE's negative ELBO): the colours span the
    trained cells' values, reversed so that the better (lower) values are bright as accuracy's are."""
    if best_trials.empty or matrices.empty:
        return None
    methods = list(dict.fromkeys(best_trials["method"]))
    tables, untrained = {}, {}
    for method in methods:
        ids = best_trials.loc[best_trials["method"] == method, "trial_id"]
        tables[method] = (matrices[matrices["trial_id"].isin(ids)].groupby(["after_task", "task"])["accuracy"].mean()
                          .unstack("task"))
        # joint training learns every task at once: every cell of its matrix is trained
        untrained[method] = np.array([[task > after and method != "joint" for task in tables[method].columns]
                                      for after in tables[method].index])
    trained = np.concatenate([tables[m].to_numpy()[~untrained[m]] for m in methods])
    trained = trained[np.isfinite(trained)]
    if not len(trained):
        return None
    if scale is None:  # from the lowest trained cell, rounded down to a tenth, to a perfect score
        low, high, cmap = min(0.9, max(0.0, np.floor(float(trained.min()) * 10) / 10)), 1.0, "viridis"
    else:
        low, high, cmap = float(trained.min()), float(trained.max()), "viridis_r"
    cols = min(4, len(methods))
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        table = tables[method]
        annotate, fmt = table.shape[1] <= 10, ".2f" if scale is None else ".1f"
        ax.set_facecolor("#e8e8e8")  # the masked cells: tasks not trained yet
        _heatmap(ax, table, untrained[method], low, high, cmap, fmt if annotate else None)
        if annotate:
            for (row, col) in zip(*np.nonzero(untrained[method])):
                ax.text(col + 0.5, row + 0.5, format(table.iat[row, col], fmt), ha="center", va="center",
                        fontsize=7, color="#888888", style="italic")
        config = best_trials.loc[best_trials["method"] == method, "config"].iloc[0] \
            if "config" in best_trials else ""
        ax.set_title(f"{display_name(method)}" + (f" ({config})" if isinstance(config, str) and config else ""),
                     fontsize=9)
        ax.set_xlabel("test task i")
        ax.set_ylabel("after training task j")
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.tight_layout()
    mappable = plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(low, high), cmap=cmap)
    fig.colorbar(mappable, ax=list(axes.flat)[:len(methods)], shrink=0.8, pad=0.02,
                 label="test accuracy (mean over seeds)" if scale is None else
                 "test negative ELBO per image, nats\n(mean over seeds; lower is better)")
    # below the panels, not on the colour bar: one row of panels is shorter than the sentence
    fig.text(0.5, 0.0, "grey cells: tasks not trained yet (their numbers in grey)", ha="center", va="top",
             fontsize=8, color=".3")
    return save(fig, out, "accuracy_matrices")


def _heatmap(ax: plt.Axes, table: pd.DataFrame, mask: np.ndarray, low: float, high: float, cmap: str,
             fmt: str | None) -> None:
    """``table`` as coloured cells, the ``mask``ed ones left to the axes' ground, each coloured cell
    annotated (``fmt``) in dark or white by its colour's luminance, rows from the top. What
    seaborn's heatmap draws, without its full-figure draw per call (to check its tick labels for
    overlap), which made the six-panel figure cost 1.3 s of every report."""
    cells = table.to_numpy(dtype=float)
    values = np.ma.masked_array(cells, mask=mask | ~np.isfinite(cells))
    norm = matplotlib.colors.Normalize(low, high)
    colours = matplotlib.colormaps[cmap]
    ax.pcolormesh(values, cmap=colours, norm=norm)
    ax.set(xlim=(0, table.shape[1]), ylim=(table.shape[0], 0))
    ax.set_xticks(np.arange(table.shape[1]) + 0.5, [str(c) for c in table.columns])
    ax.set_yticks(np.arange(table.shape[0]) + 0.5, [str(r) for r in table.index], rotation="vertical", va="center")
    for spine in ax.spines.values():
        spine.set_visible(False)
    if fmt is None:
        return
    for row, col in zip(*np.nonzero(~np.ma.getmaskarray(values))):
        dark_text = _luminance(colours(norm(values[row, col]))) > 0.408
        ax.text(col + 0.5, row + 0.5, format(values[row, col], fmt), ha="center", va="center", fontsize=7,
                color=".15" if dark_text else "w")


def _luminance(rgba: tuple[float, ...]) -> float:
    """A colour's relative luminance (W3C), by which seaborn picks dark or white annotations."""
    channels = np.asarray(rgba[:3], dtype=float)
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


# Two running-accuracy curves closer than this share of the axis' span at every task are one
# line to the eye: their markers (6 points across, on an axis about 230 points tall) overlap
HIDDEN_SHARE = 0.02


def running_accuracy(matrices: pd.DataFrame, best_trials: pd.DataFrame, out: Path,
                     higher_is_better: bool = True) -> Path | None:
    """Figure 7a: the average score over the tasks seen so far, as tasks are added, per method
    at its selected configuration (named in the legend); mean over seeds, band ± 1 std.

    Joint training learns every task at once, so it has no curve over tasks: it is the
    dash-dotted line at its score over all tasks."""
    if best_trials.empty or matrices.empty:
        return None
    seen = matrices[matrices["task"] <= matrices["after_task"]]
    per_trial = seen.groupby(["trial_id", "after_task"])["accuracy"].mean().reset_index()
    columns = ["trial_id", "method"] + (["config"] if "config" in best_trials else [])
    data = per_trial.merge(best_trials[columns], on="trial_id")
    if "config" not in data:
        data["config"] = ""
    joint = data[data["method"] == "joint"]
    data = data[data["method"] != "joint"]
    labels = {m: display_name(m) + (f" ({c})" if c else "") for m, c in
              data.groupby("method", sort=False)["config"].first().items()}
    # a method whose mean lies within HIDDEN_SHARE of the axis' span of an earlier one's at every
    # task (SGD is fine-tuning in some presets; regularisers at a learning rate that barely moves
    # the network) hides that one's line under its own: its legend entry says so
    values_of: dict[str, tuple[float, ...]] = {}
    means: dict[str, pd.Series] = {}
    drawn = pd.concat([data["accuracy"], joint.loc[joint["after_task"] == joint["after_task"].max(), "accuracy"]])
    span = float(drawn.max() - drawn.min()) if len(drawn) else 0.0  # the axis holds joint's line too
    for method, values in data.groupby("method", sort=False):
        own = tuple(values.sort_values(["after_task", "accuracy"])["accuracy"].round(12))
        mean = values.groupby("after_task")["accuracy"].mean()
        under = next((m for m, other in means.items() if other.index.equals(mean.index)
                      and float((other - mean).abs().max()) <= HIDDEN_SHARE * span), None)
        values_of[method], means[method] = own, mean
        if under is None:
            continue
        if values_of[under] == own:
            labels[method] += f" (the same values as {display_name(under)}, drawn over it)"
            continue
        gap = float((means[under] - mean).abs().max())
        gap_text = f"{max(100 * gap, 0.01):.2f} points" if higher_is_better else f"{max(gap, 0.01):.2f} nats"
        labels[method] += f" (≤ {gap_text} from {display_name(under)} at every task, drawn over it)"
    methods = list(labels)
    data = data.assign(method=data["method"].map(labels))
    fig, ax = plt.subplots(figsize=(6.6, 4))
    if len(data):
        sns.lineplot(data=data, x="after_task", y="accuracy", hue="method", style="method",
                     hue_order=[labels[m] for m in methods],
                     palette={labels[m]: look(m).colour for m in methods},
                     markers={labels[m]: look(m).marker for m in methods}, dashes=False, errorbar="sd", ax=ax)
    if len(joint):
        final = joint[joint["after_task"] == joint["after_task"].max()]["accuracy"].mean()
        ax.axhline(final, color=look("joint").colour, linestyle="-.", linewidth=1.2,
                   label="Joint (every task at once; its final score)")
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average test accuracy on the tasks seen" if higher_is_better else
                  "average test −ELBO per image on the tasks seen\n(nats; lower is better)")
    seeds = best_trials.groupby("method")["seed"].nunique() if "seed" in best_trials else pd.Series(dtype=int)
    n = f"{seeds.min()}" if len(seeds) and seeds.min() == seeds.max() else \
        (f"{seeds.min()}–{seeds.max()}" if len(seeds) else "the")
    ax.set_title("one seed (no spread shown)" if n == "1" else f"mean over {n} seeds; band: ± 1 std over seeds",
                 fontsize=9)
    ax.set_xticks(sorted(seen["after_task"].unique()))
    # the legend beside the axes, never over a curve (inside, "best" still covered joint's line)
    ax.legend(fontsize=7.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, out, "running_accuracy")


def importance_densities(long: pd.DataFrame, out: Path, per_layer: bool = False, drawn: str = "") -> Path | None:
    """Figure 6: density of log10(importance / max) per method (optionally one panel per layer);
    ``drawn`` says in the title which seed of how many the densities are."""
    if long.empty:
        return None
    data = long.copy()
    methods = list(dict.fromkeys(data["method"]))
    scale = data.groupby("method")["value"].transform("max").replace(0, np.nan)
    column = "log10 normalised importance (zeros at -12)"
    data[column] = np.log10(np.clip(data["value"] / scale, 1e-12, None))
    data["method"] = data["method"].map(display_name)
    grid = sns.displot(data=data, x=column, hue="method", col="layer" if per_layer else None,
                       hue_order=[display_name(m) for m in methods], palette=_palette(methods),
                       kind="kde", common_norm=False, fill=True, alpha=0.25, height=3.5, aspect=1.4,
                       col_wrap=3 if per_layer else None, facet_kws={"sharey": False}, warn_singular=False)
    _mark_single_values(grid, data, column, per_layer, _palette(methods))
    title = "importance after the last task (normalised per method)"
    grid.figure.suptitle(f"{title}\n{drawn}" if drawn else title, y=1.03 if not drawn else 1.08)
    return save(grid.figure, out, "importance_by_layer" if per_layer else "importance")


def _mark_single_values(grid: sns.FacetGrid, data: pd.DataFrame, column: str, per_layer: bool,
                        colours: dict[str, str]) -> None:
    """A method whose values in a panel are all one (a layer of one weight: a decoder's output
    bias) has no density: seaborn leaves it out, which reads as nothing there. Each is drawn as a
    dotted line at its value, in its colour, and the panel says so."""
    panels = grid.axes_dict.items() if per_layer else [(None, grid.ax)]
    for layer, ax in panels:
        here = data if layer is None else data[data["layer"] == layer]
        single = [(method, values.iloc[0]) for method, values in here.groupby("method", sort=False)[column]
                  if values.nunique() == 1]
        for method, value in single:
            ax.axvline(value, color=colours[method], linestyle=":", linewidth=2)
        if single:
            counts = here["method"].value_counts()
            ax.text(0.02, 0.97, "no density; dotted line at the value:\n" + "\n".join(
                f"{m}: {'its one value' if counts[m] == 1 else f'all {counts[m]} values'} at {v:.2f}"
                for m, v in single), transform=ax.transAxes, fontsize=7.5, va="top")


_HYPERPARAMETER_NAMES = {"lam": "λ (strength)", "lr": "learning rate", "penalty_step": "penalty step"}


def hyperparameter_importance(table: pd.DataFrame, out: Path, stem: str = "hyperparameter_importance") -> Path | None:
    """One bar per searched hyperparameter, a panel per method in its colour: fANOVA's share
    of the score's variance (analysis.selection.hyperparameter_importances). Methods whose
    importances could not be fitted are left out. A method that searched one hyperparameter
    gets no bar: fANOVA gives that one all of the variance by definition, which says nothing."""
    table = table.dropna(subset=["importance"])
    if table.empty:
        return None
    key = f"{stem}\n{table.to_csv(index=False)}"
    if key in _IMPORTANCE_DRAWN:  # the same table drawn before (recommend: its report, then the recommendation)
        out.mkdir(parents=True, exist_ok=True)
        for suffix, content in _IMPORTANCE_DRAWN[key].items():
            (out / f"{stem}{suffix}").write_bytes(content)
        return out / f"{stem}.png"
    methods = list(dict.fromkeys(table["method"]))
    columns = min(3, len(methods))
    rows = -(-len(methods) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns + 0.6, 2.1 * rows + 0.5), sharex=True,
                             squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax, method in zip(axes.flat, methods):
        rows = table[table["method"] == method].sort_values("importance")
        labels = [_HYPERPARAMETER_NAMES.get(n, n) for n in rows["hyperparameter"]]
        ax.set_xlim(0, 1)
        if len(rows) == 1:
            ax.set_yticks([])
            ax.text(0.5, 0.5, f"one hyperparameter searched ({labels[0]}):\nall of the variance is its own\n"
                    "by definition; no bar drawn", ha="center", va="center", fontsize=8, color="#555555",
                    transform=ax.transAxes)
        else:
            ax.barh(labels, rows["importance"], color=look(method).colour)
        ax.set_title(f"{display_name(method)} ({int(rows['trials'].iloc[0])} trials)", fontsize=10)
        ax.set_xlabel("importance (fANOVA)")
        ax.tick_params(labelbottom=True)  # every panel readable on its own (shared x hides upper rows' ticks)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Which hyperparameters matter: share of the score's variance", fontsize=11)
    fig.tight_layout()
    path = save(fig, out, stem)
    _IMPORTANCE_DRAWN.clear()  # the last table only
    _IMPORTANCE_DRAWN[key] = {suffix: (out / f"{stem}{suffix}").read_bytes() for suffix in (".png", ".pdf")}
    return path


# the last importance figure's files by its table (and stem): drawing it took 0.4 s, and
# ``recommend`` draws the same one for its search report and its recommendation
_IMPORTANCE_DRAWN: dict[str, dict[str, bytes]] = {}

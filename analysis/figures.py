"""Seaborn figures of a sweep, each saved as PNG (for report.md) and PDF (for a paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

_PANELS = [("acc", "ACC"), ("fwt", "FWT"), ("bwt", "BWT")]


def save(fig: plt.Figure, out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=130, bbox_inches="tight")
    fig.savefig(out / f"{stem}.pdf", bbox_inches="tight")
    plt.close(fig)
    return out / f"{stem}.png"


def baseline(trials: pd.DataFrame) -> tuple[float, str] | None:
    """The dotted line of Figure 4: joint training's mean ACC, else fine-tuning's (labelled so)."""
    for method, label in [("joint", "joint training"), ("finetune", "fine-tuning (no joint run)")]:
        rows = trials[(trials["method"] == method) & (trials["status"] == "finished")]
        if len(rows):
            return float(rows["acc"].mean()), f"{label}, ACC"
    return None


def lambda_curve(trials: pd.DataFrame, out: Path, fwt_column: str = "fwt", parameter: str = "lam",
                 panels: list[tuple[str, str]] | None = None, stem: str = "lambda_robustness") -> Path | None:
    """Figure 4: ACC, FWT and BWT against λ (log axis), mean and 95% CI over seeds, per method.

    Diverged λ values have no metrics: they are marked with an ``x`` under each panel.
    ``panels`` (column, title) replaces the three panels, e.g. with validation ACC first.
    """
    swept = trials[trials["params"] == parameter] if parameter in trials.columns else trials.iloc[0:0]
    if swept.empty or swept[parameter].nunique() < 2:
        return None
    methods = list(dict.fromkeys(swept["method"]))
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    custom = panels is not None
    panels = panels or [(fwt_column if c == "fwt" else c, f"{t} ({'paper eq. 7' if fwt_column == 'fwt_paper' else 'standard'})"
                         if c == "fwt" else t) for c, t in _PANELS]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 4), sharex=True)
    finished = swept[swept["status"] == "finished"]
    diverged = swept[swept["status"] == "diverged"]
    line = baseline(trials)
    for ax, (column, title) in zip(axes, panels):
        sns.lineplot(data=finished, x=parameter, y=column, hue="method", hue_order=methods, palette=palette,
                     marker="o", errorbar=("ci", 95), ax=ax, legend=ax is axes[0])
        if column == "acc" and line is not None:
            ax.axhline(line[0], linestyle=":", color="black", label=line[1])
        if len(diverged):  # one row of x marks per method under the curves, so none hides another
            low, high = ax.get_ylim()
            step = 0.04 * (high - low)
            for k, (method, group) in enumerate(diverged.groupby("method")):
                xs = group[parameter].unique()
                ax.scatter(xs, [low - step * (k + 1)] * len(xs), marker="x", color=palette[method], s=36,
                           clip_on=False, zorder=5)
            ax.set_ylim(low - step * (diverged["method"].nunique() + 1), high)
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax.set_title(title)
        ax.set_ylabel(title if custom else column.upper().replace("_PAPER", ""))
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), title="x: λ diverged", fontsize=8)
    fig.suptitle("λ robustness: mean over seeds, 95% CI")
    fig.tight_layout()
    return save(fig, out, stem)


def accuracy_heatmaps(matrices: pd.DataFrame, best_trials: pd.DataFrame, out: Path) -> Path | None:
    """P[j, i] of each method's best configuration (mean over its seeds), side by side."""
    if best_trials.empty or matrices.empty:
        return None
    methods = list(dict.fromkeys(best_trials["method"]))
    cols = min(4, len(methods))
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        ids = best_trials.loc[best_trials["method"] == method, "trial_id"]
        table = (matrices[matrices["trial_id"].isin(ids)].groupby(["after_task", "task"])["accuracy"].mean()
                 .unstack("task"))
        sns.heatmap(table, vmin=0, vmax=1, annot=table.shape[1] <= 10, fmt=".2f", cmap="viridis", cbar=False, ax=ax,
                    annot_kws={"size": 7})
        ax.set_title(method)
        ax.set_xlabel("test task i")
        ax.set_ylabel("after training task j")
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, out, "accuracy_matrices")


def running_accuracy(matrices: pd.DataFrame, best_trials: pd.DataFrame, out: Path) -> Path | None:
    """Figure 7a: average accuracy over the tasks seen so far, as tasks are added."""
    if best_trials.empty or matrices.empty:
        return None
    seen = matrices[matrices["task"] <= matrices["after_task"]]
    per_trial = seen.groupby(["trial_id", "after_task"])["accuracy"].mean().reset_index()
    data = per_trial.merge(best_trials[["trial_id", "method"]], on="trial_id")
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="after_task", y="accuracy", hue="method", marker="o", errorbar=("ci", 95), ax=ax)
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average accuracy on tasks seen")
    ax.set_xticks(sorted(data["after_task"].unique()))
    return save(fig, out, "running_accuracy")


def importance_densities(long: pd.DataFrame, out: Path, per_layer: bool = False) -> Path | None:
    """Figure 6: density of log10(importance / max) per method (optionally one panel per layer)."""
    if long.empty:
        return None
    data = long.copy()
    scale = data.groupby("method")["value"].transform("max").replace(0, np.nan)
    column = "log10 normalised importance (zeros at -12)"
    data[column] = np.log10(np.clip(data["value"] / scale, 1e-12, None))
    grid = sns.displot(data=data, x=column, hue="method", col="layer" if per_layer else None,
                       kind="kde", common_norm=False, fill=True, alpha=0.25, height=3.5, aspect=1.4,
                       col_wrap=3 if per_layer else None, facet_kws={"sharey": False})
    grid.figure.suptitle("importance after the last task (normalised per method)", y=1.03)
    return save(grid.figure, out, "importance_by_layer" if per_layer else "importance")

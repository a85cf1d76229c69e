"""Per-configuration summaries and each method's best configuration (paper Tables 2 and 3).

A *configuration* is a method plus its searched values (``lam=4, lr=0.1``); its seeds are
repeats. A diverged seed counts as the worst possible value (-1) when configurations are
ranked, so a λ that diverges on some seeds never wins; its metrics are left out of the means
and counted in ``n_diverged`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .. import trial_files
from .load import METRIC_COLUMNS, VALIDATION_COLUMNS

DIVERGED_VALUE = -1.0
_DONE = ("finished", "diverged")


def config_label(row: pd.Series) -> str:
    """``lam=4, lr=0.1`` from a trial row (empty string for a method with nothing searched)."""
    names = [n for n in str(row.get("searched") or "").split(",") if n]
    return ", ".join(f"{n}={_short(row[n])}" for n in names)


def higher_is_better(trials: pd.DataFrame) -> bool:
    """False where the trials' matrices hold a loss (a VAE's negative ELBO; objectives.py), so
    the best is the lowest; True for accuracy, and for sweeps written before the column existed."""
    return "higher_is_better" not in trials or bool(trials["higher_is_better"].astype(bool).all())


def one_per_seed(trials: pd.DataFrame) -> pd.DataFrame:
    """Each (method, configuration, seed) once, so that no seed counts twice in a mean, a std or
    a paired test: where two phases trained the same configuration and seed alike (a sweep from
    before the final phase reused the search's trials), the final phase's row is kept. Phase
    ``evaluate`` trains on other data (the study's benchmark, not the selection part): its rows
    are their own experiment and stay."""
    if trials.empty or "seed" not in trials:
        return trials
    labels = trials["config"] if "config" in trials else trials.apply(config_label, axis=1)
    phase = trials["phase"] if "phase" in trials else pd.Series("", index=trials.index)
    blank = pd.Series("", index=trials.index)
    key = pd.DataFrame({"method": trials["method"], "config": labels, "seed": trials["seed"],
                        "evaluate": phase == trial_files.EVALUATE_PHASE,
                        "benchmark": trials.get("benchmark", blank).astype(object).fillna(""),
                        "step": trials.get("penalty_step", blank).astype(object).fillna("")})
    later = (phase == trial_files.FINAL_PHASE).astype(int)  # on a tie of key, the final phase's row wins
    order = later.sort_values(kind="mergesort").index
    kept = ~key.loc[order].duplicated(keep="last")
    return trials.loc[order[kept.to_numpy()]].sort_index()


def summarize_configs(trials: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """One row per (method, configuration): seeds, diverged seeds, mean and std of each metric.

    ``rank_value`` is the mean of ``metric`` over seeds with diverged seeds at -1; ranking
    and best-config selection use it.
    """
    done = trials[trials["status"].isin(_DONE)].copy()
    if done.empty:
        return pd.DataFrame(columns=["method", "config", "n_seeds", "n_diverged", "rank_value"])
    done["config"] = done.apply(config_label, axis=1)
    done["rank_input"] = np.where(done["status"] == "diverged", DIVERGED_VALUE, done[metric])
    if not higher_is_better(done):
        # a loss (the VAE's negative ELBO): rank on minus it, and a diverged seed ranks last
        done["rank_input"] = np.where(done["status"] == "diverged", -np.inf, -done[metric].astype(float))
    groups = []
    for (method, config), group in done.groupby(["method", "config"], sort=False, dropna=False):
        finished = group[group["status"] == "finished"]
        row = {"method": method, "config": config, "n_seeds": len(group),
               "n_diverged": int((group["status"] == "diverged").sum()),
               "rank_value": float(group["rank_input"].mean())}
        for name in [n for n in str(group["searched"].iloc[0] or "").split(",") if n]:
            row[name] = group[name].iloc[0]
        for column in [c for c in METRIC_COLUMNS + VALIDATION_COLUMNS if c in finished]:
            values = finished[column].dropna()
            row[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else math.nan)
        row["seconds_mean"] = float(group["seconds"].mean())
        if "output" in group and group["output"].notna().any():  # the output layout, named in every table
            row["output"] = str(group["output"].dropna().iloc[0])
        groups.append(row)
    return pd.DataFrame(groups)


def best_configs(trials: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Each method's best configuration: highest ``rank_value``; ties go to the simpler one.

    Simpler = smaller searched values in the order the parameters are named (a weaker
    penalty, a smaller learning rate), which is what a reader would pick by hand.
    """
    summary = summarize_configs(trials, metric)
    if summary.empty:
        return summary
    best = []
    for _, group in summary.groupby("method", sort=False):
        names = [c for c in group.columns if c in _param_names(trials)]
        ordered = group.assign(_rank=group["rank_value"].round(12)).sort_values(
            ["_rank", *names], ascending=[False, *([True] * len(names))], na_position="last", kind="mergesort")
        best.append(ordered.iloc[0].drop(labels="_rank"))
    return pd.DataFrame(best).reset_index(drop=True)


def _param_names(trials: pd.DataFrame) -> list[str]:
    names: list[str] = []
    for value in trials.get("searched", pd.Series(dtype=str)).dropna().unique():
        names += [n for n in str(value).split(",") if n and n not in names]
    return sorted(names)


def params_of(row: pd.Series, names: Iterable[str]) -> dict:
    """The searched values of a summary row as a plain dict (NaN columns left out)."""
    out = {}
    for name in names:
        value = row.get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[name] = value.item() if hasattr(value, "item") else value
    return out


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

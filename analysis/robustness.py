"""How insensitive a method is to λ, as a number (the paper's "less sensitive" claim, measured).

For each method swept over λ: the best mean ACC over seeds, and the widest *contiguous*
run of swept λ values around the best one whose mean ACC stays within ``tolerance`` (default
1 point) of it — a λ where any seed diverged never counts. Its width in decades,
log10(λ_high / λ_low), is the robustness score. It is limited by the grid's resolution:
compare methods swept over the same λ values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .tables import summarize_configs


def robustness_scores(trials: pd.DataFrame, tolerance: float = 0.01, parameter: str = "lam",
                      metric: str = "acc") -> pd.DataFrame:
    """One row per method swept over ``parameter``: best λ, stable range, width in decades
    (``metric``: ``acc``, or ``val_acc`` where the sweep selects on validation)."""
    if parameter not in trials.columns:
        return pd.DataFrame(columns=["method", "best_lam", "best_acc", "stable_low", "stable_high", "decades"])
    swept = trials[trials["params"] == parameter]  # methods whose only searched value is λ
    summary = summarize_configs(swept, metric=metric)
    rows = []
    for method, group in summary.groupby("method", sort=False):
        group = group.sort_values(parameter)
        lams = group[parameter].to_numpy(dtype=float)
        # a λ with a diverged seed fails; otherwise its mean ACC over seeds
        acc = np.where(group["n_diverged"].to_numpy() > 0, -np.inf, group[f"{metric}_mean"].to_numpy(dtype=float))
        if len(lams) < 2 or not np.isfinite(acc).any():
            continue
        best = int(np.nanargmax(acc))
        ok = acc >= acc[best] - tolerance
        low, high = best, best
        while low > 0 and ok[low - 1]:
            low -= 1
        while high < len(lams) - 1 and ok[high + 1]:
            high += 1
        diverged = group.loc[group["n_diverged"] > 0, parameter]
        rows.append({
            "method": method, "best_lam": lams[best], "best_acc": float(acc[best]),
            "stable_low": lams[low], "stable_high": lams[high],
            "decades": math.log10(lams[high] / lams[low]) if lams[low] > 0 else math.inf,
            "first_diverged_lam": float(diverged.min()) if len(diverged) else math.nan,
            "n_lams": len(lams),
        })
    return pd.DataFrame(rows)

"""How insensitive a method is to λ, as a number (the paper's "less sensitive" claim, measured).

For each method swept over λ: the best mean ACC over seeds, and the widest *contiguous*
run of swept λ values around the best one whose mean ACC stays within ``tolerance`` (default
1 point) of it — a λ where any seed diverged never counts. Its width in decades,
log10(λ_high / λ_low), is the robustness score. It is limited by the grid's resolution:
compare methods swept over the same λ values.

A method swept with both penalty steps (``penalty_step: [explicit, implicit]`` in its space,
or fixed in its options) gets one row per step: the explicit step's range is bounded by SGD's
stability, the implicit one's by the method itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spp_sweep.results.tables import summarize_configs

VARIANT = "penalty_step"  # a searched setting that makes a separate curve, not a point on one


def swept_over(trials: pd.DataFrame, parameter: str = "lam") -> pd.DataFrame:
    """The trials of methods whose only searched value is ``parameter`` (besides the penalty step),
    with ``penalty_step`` filled ("-" for methods without one) so it can group curves."""
    if parameter not in trials.columns or trials.empty:
        return trials.iloc[0:0].assign(**{VARIANT: pd.Series(dtype=object)})
    searched = trials["searched"].fillna("").map(lambda p: set(filter(None, str(p).split(","))) - {VARIANT})
    swept = trials[searched.map(lambda names: names == {parameter})].copy()
    step = swept[VARIANT] if VARIANT in swept else pd.Series(None, index=swept.index, dtype=object)
    swept[VARIANT] = step.fillna("-").astype(str)
    return swept


def robustness_scores(trials: pd.DataFrame, tolerance: float = 0.01, parameter: str = "lam",
                      metric: str = "acc", higher_is_better: bool = True) -> pd.DataFrame:
    """One row per method (and penalty step) swept over ``parameter``: best λ, stable range,
    width in decades.

    ``metric`` chooses the best λ and the stable range: ``acc``, or ``val_acc`` where the sweep
    selects on validation (the test set then never picks anything). ``best_acc`` is always the
    test ACC at the chosen λ; ``best_score`` is the selection metric there. Where the matrix
    holds a loss (``higher_is_better=False``: a VAE's negative ELBO) the best is the lowest and
    the tolerance is relative: a rise of ``tolerance`` times the best loss."""
    swept = swept_over(trials, parameter)
    rows = []
    for (method, step), by_step in swept.groupby(["method", VARIANT], sort=False):
        group = summarize_configs(by_step.drop(columns=[VARIANT]).assign(searched=parameter), metric=metric)
        if group.empty:
            continue
        group = group.sort_values(parameter)
        lams = group[parameter].to_numpy(dtype=float)
        # a λ with a diverged seed fails; otherwise its mean ACC over seeds
        sign = 1.0 if higher_is_better else -1.0  # a loss (the VAE's -ELBO): best is lowest
        means = sign * group[f"{metric}_mean"].to_numpy(dtype=float)
        acc = np.where(group["n_diverged"].to_numpy() > 0, -np.inf, means)
        if len(lams) < 2 or not np.isfinite(acc).any():
            continue
        best = int(np.nanargmax(acc))
        # a loss has no fixed scale (nats per image grow with the image): there the tolerance is
        # relative, a rise of `tolerance` times the best value
        ok = acc >= acc[best] - (tolerance if higher_is_better else tolerance * abs(acc[best]))
        low, high = best, best
        while low > 0 and ok[low - 1]:
            low -= 1
        while high < len(lams) - 1 and ok[high + 1]:
            high += 1
        diverged = group.loc[group["n_diverged"] > 0, parameter]
        test_acc = group["acc_mean"].to_numpy(dtype=float)[best] if "acc_mean" in group else math.nan
        rows.append({
            "method": method, VARIANT: step, "selected_on": metric, "best_lam": lams[best],
            "best_score": float(sign * acc[best]), "best_acc": float(test_acc),
            "stable_low": lams[low], "stable_high": lams[high],
            "decades": math.log10(lams[high] / lams[low]) if lams[low] > 0 else math.inf,
            "first_diverged_lam": float(diverged.min()) if len(diverged) else math.nan,
            "n_lams": len(lams),
        })
    columns = ["method", VARIANT, "selected_on", "best_lam", "best_score", "best_acc", "stable_low", "stable_high",
               "decades", "first_diverged_lam", "n_lams"]
    frame = pd.DataFrame(rows, columns=columns)
    if (frame[VARIANT] == "-").all():  # nothing had a penalty step to tell apart: keep the table short
        frame = frame.drop(columns=[VARIANT])
    return frame

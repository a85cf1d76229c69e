"""Section 4.2.5's parameter analysis (Figures 7b, 7c, 8), from a trial's ``parameters.npz``.

A run with ``save_parameters: true`` saves, after every task t, the shared parameters θ_t and
SPP's label-free importance Ω_t of them on task t (the same measure for every method, so that
fine-tuning and SGD, which have no importance of their own, can be compared; engine.py).
Everything here works on those arrays only.

* Figure 7(b), similarity of the importance distributions of the first and the last task, per
  layer: the **Fréchet distance between the two one-dimensional distributions of importance
  values** of that layer's weights, each normalised by its maximum (as Figure 6 draws them) so
  that a layer's overall scale, which grows with training, does not dominate. Between
  distributions on the real line the Fréchet distance is the 2-Wasserstein distance,
  sqrt(∫₀¹ (F⁻¹(q) − G⁻¹(q))² dq); for two samples of equal size (the same layer) that is the
  root mean square difference of the sorted values: exact, no density estimate. The paper
  cites the Fréchet distance without saying between what; ``kind="gaussian"`` gives its
  Gaussian form (Dowson & Landau, as in FID), sqrt((μ₁ − μ₂)² + (σ₁ − σ₂)²), for comparison.
  Lower means more alike.
* Figure 7(c), importance-weighted change of the parameters between the first and the last
  task, per layer: Σ_k Ω_1,k (θ_T,k − θ_1,k)², the first task's quadratic penalty (eq. 5
  without λ) evaluated at the last task's parameters: how much the change costs task 1; and
  the unweighted Σ_k (θ_T,k − θ_1,k)² beside it.
* Figure 8: for one layer, −|θ_j − θ_i| beside Ω_i, as matrices (output × input units).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("empirical", "gaussian")


def frechet_distance(a: np.ndarray, b: np.ndarray, kind: str = "empirical") -> float:
    """Fréchet (2-Wasserstein) distance between the distributions of the values of ``a`` and ``b``."""
    a, b = np.sort(np.ravel(a).astype(float)), np.sort(np.ravel(b).astype(float))
    if kind == "gaussian":
        return float(np.sqrt((a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2))
    if kind != "empirical":
        raise ValueError(f"kind must be one of {KINDS}")
    if len(a) != len(b):  # quantile functions on a grid of max(n, m) points (exact when sizes are equal)
        q = (np.arange(max(len(a), len(b))) + 0.5) / max(len(a), len(b))
        a, b = np.quantile(a, q, method="inverted_cdf"), np.quantile(b, q, method="inverted_cdf")  # exact F⁻¹
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _normalised(values: np.ndarray) -> np.ndarray:
    top = float(np.max(values)) if values.size else 0.0
    return values / top if top > 0 else values


def layers(saved: Mapping[str, Any]) -> list[str]:
    """The weight matrices (and kernels) among the saved names, in saved order; biases left out."""
    names = [key.split("/", 1)[1] for key in saved if key.startswith("task0/")]
    return [n for n in names if np.ndim(saved[f"task0/{n}"]) >= 2]


def n_tasks(saved: Mapping[str, Any]) -> int:
    return len({key.split("/", 1)[0] for key in saved if key.startswith("task")})


def importance_similarity(saved: Mapping[str, Any], kind: str = "empirical") -> pd.DataFrame:
    """Figure 7(b): per layer, Fréchet distance between Ω_1 and Ω_T (each over its maximum)."""
    last = n_tasks(saved) - 1
    return pd.DataFrame([{"layer": name, "frechet": frechet_distance(
        _normalised(saved[f"importance0/{name}"]), _normalised(saved[f"importance{last}/{name}"]), kind)}
        for name in layers(saved)])


def weighted_change(saved: Mapping[str, Any]) -> pd.DataFrame:
    """Figure 7(c): per layer, Σ Ω_1 (θ_T − θ_1)², the first task's penalty at the last
    parameters, and beside it the unweighted Σ (θ_T − θ_1)² (``change``)."""
    last = n_tasks(saved) - 1
    rows = []
    for name in layers(saved):
        squared = (saved[f"task{last}/{name}"] - saved[f"task0/{name}"]) ** 2
        rows.append({"layer": name, "weighted_change": float(np.sum(saved[f"importance0/{name}"] * squared)),
                     "change": float(np.sum(squared))})
    return pd.DataFrame(rows)


def per_weight(saved: Mapping[str, Any], top: float = 0.10) -> pd.DataFrame:
    """Weight-by-weight statistics per layer, matched by position (what 7b's sorted values and 7c's
    sums cannot see: *which* weights are important and which of them moved):

    * ``rank_corr_importance``: Spearman correlation of Ω_1 and Ω_T over the layer's weights (1:
      the same weights stay the important ones);
    * ``matched_distance``: RMS of Ω_1/max − Ω_T/max weight by weight (7b's distance with the
      weights matched instead of sorted; ≥ the sorted one);
    * ``rank_corr_change``: Spearman correlation of Ω_1 and |θ_T − θ_1| (negative: the weights
      task 1 needs moved least, Figure 8's claim);
    * ``move_top`` / ``move_bottom_half``: mean |θ_T − θ_1| of the ``top`` fraction of weights by
      Ω_1 and of the less important half.
    Ω here is SPP's probe importance for every method (engine.py), so the statistics compare the
    methods on one measure; for SPP it is also (part of) what its penalty weights, which the
    movement statistics inherit, while the rank correlations of Ω do not.
    """
    from scipy import stats

    last = n_tasks(saved) - 1
    rows = []
    for name in layers(saved):
        first, final = np.ravel(saved[f"importance0/{name}"]), np.ravel(saved[f"importance{last}/{name}"])
        moved = np.abs(np.ravel(saved[f"task{last}/{name}"]) - np.ravel(saved[f"task0/{name}"]))
        order = np.argsort(-first, kind="stable")
        n_top = max(1, int(round(top * len(first))))

        def spearman(a: np.ndarray, b: np.ndarray) -> float:
            if np.ptp(a) == 0 or np.ptp(b) == 0:
                return float("nan")
            return float(stats.spearmanr(a, b).statistic)

        rows.append({"layer": name, "rank_corr_importance": spearman(first, final),
                     "matched_distance": float(np.sqrt(np.mean((_normalised(first) - _normalised(final)) ** 2))),
                     "rank_corr_change": spearman(first, moved), "move_top": float(moved[order[:n_top]].mean()),
                     "move_bottom_half": float(moved[order[len(first) // 2:]].mean())})
    return pd.DataFrame(rows)


def change_and_importance(saved: Mapping[str, Any], layer: str, first: int = 0,
                          second: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Figure 8: (−|θ_second − θ_first|, Ω_first) of one layer as 2-D arrays (kernels flattened)."""
    second = n_tasks(saved) - 1 if second is None else second
    change = -np.abs(saved[f"task{second}/{layer}"] - saved[f"task{first}/{layer}"])
    importance = saved[f"importance{first}/{layer}"]
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
    return flat(change), flat(importance)

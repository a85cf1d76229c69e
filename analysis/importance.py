"""Importance distributions (paper Figure 6) and how concentrated and polarised they are.

SPP's claim (section 3.3) is that its importance is *polarised*: few parameters matter a
lot, most hardly at all. Three numbers per method make that comparable, each on the
importance normalised by its maximum (so λ's scale drops out):

* ``gini``: Gini coefficient of the importances (0 = all equal, 1 = one parameter has all);
* ``top1_share``: the share of the total importance held by the top 1% of parameters;
* ``near_zero``: the fraction of parameters below 1e-3 of the maximum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def importance_table(arrays: dict[str, np.ndarray], method: str, task: int | None = None) -> pd.DataFrame:
    """Long table (method, layer, value) of one trial's importances after ``task`` (default: last)."""
    tasks = sorted({int(key.split("/", 1)[0][4:]) for key in arrays})
    if not tasks:
        return pd.DataFrame(columns=["method", "layer", "value"])
    chosen = tasks[-1] if task is None else task
    frames = [pd.DataFrame({"method": method, "layer": key.split("/", 1)[1], "value": value.ravel()})
              for key, value in arrays.items() if key.startswith(f"task{chosen}/")]
    return pd.concat(frames, ignore_index=True)


def concentration(values: np.ndarray) -> dict[str, float]:
    """Gini, top-1% share and near-zero fraction of a set of non-negative importances."""
    v = np.sort(np.abs(np.asarray(values, dtype=float).ravel()))
    if v.size == 0 or v[-1] == 0:
        return {"gini": float("nan"), "top1_share": float("nan"), "near_zero": float("nan")}
    n = v.size
    # Gini from the sorted values: 1 - 2 * area under the Lorenz curve
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ v / (n * v.sum()))
    top = max(1, int(round(0.01 * n)))
    return {"gini": gini, "top1_share": float(v[-top:].sum() / v.sum()), "near_zero": float((v < 1e-3 * v[-1]).mean())}


def concentration_table(long: pd.DataFrame, per_layer: bool = False) -> pd.DataFrame:
    """:func:`concentration` per method (and per layer)."""
    keys = ["method", "layer"] if per_layer else ["method"]
    rows = [{**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "n": len(group),
             **concentration(group["value"].to_numpy())} for key, group in long.groupby(keys, sort=False)]
    return pd.DataFrame(rows)


def placement(arrays: dict[str, np.ndarray], task: int | None = None) -> dict[str, float | str]:
    """Where one trial's importance sits after ``task`` (default: the last): the share of the total
    on bias vectors (1-D tensors), the share on the single largest tensor, and the fraction of
    exactly-zero entries in the weight tensors (2-D and larger), over all of them and in the
    worst one. A label-free importance that lands on a few biases protects little of a network."""
    tasks = sorted({int(key.split("/", 1)[0][4:]) for key in arrays})
    if not tasks:
        return {}
    chosen = tasks[-1] if task is None else task
    tensors = {key.split("/", 1)[1]: np.abs(np.asarray(v, dtype=float)) for key, v in arrays.items()
               if key.startswith(f"task{chosen}/")}
    total = sum(float(v.sum()) for v in tensors.values())
    weights = [v for v in tensors.values() if v.ndim >= 2]
    largest = max(tensors, key=lambda name: float(tensors[name].sum()))
    placement: dict[str, float | str] = {
        "bias_share": sum(float(v.sum()) for v in tensors.values() if v.ndim < 2) / total if total else float("nan"),
        "largest_tensor": largest,
        "largest_tensor_share": float(tensors[largest].sum()) / total if total else float("nan"),
        "zeros_in_weights": float(sum(int((v == 0).sum()) for v in weights) / max(1, sum(v.size for v in weights))),
        "zeros_worst_weight_tensor": max((float((v == 0).mean()) for v in weights), default=float("nan")),
    }
    return placement

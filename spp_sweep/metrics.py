"""Continual-learning metrics computed from the accuracy matrix (paper section 4.1, eqs. 6-9).

``P[j][i]`` is the test accuracy on task ``i`` after training on task ``j`` (0-based here, the
paper counts from 1). Every function accepts a partial matrix (fewer rows than tasks, as after
an interrupted or diverged run) and returns NaN where a metric is not defined yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]]


def _as_array(matrix: Matrix) -> np.ndarray:
    array = np.asarray(matrix, dtype=float)
    if array.size == 0:
        return np.zeros((0, 0))
    if array.ndim != 2 or array.shape[0] > array.shape[1]:
        raise ValueError(f"accuracy matrix must be (rows <= tasks) x tasks, got shape {array.shape}")
    return array


def average_accuracy(matrix: Matrix) -> float:
    """ACC: mean accuracy over the tasks seen so far after the last finished task (eq. 6)."""
    p = _as_array(matrix)
    rows = p.shape[0]
    if rows == 0:
        return math.nan
    # eq. 6: ACC = 1/T sum_i P[T, i]; on a partial matrix, over the t tasks seen so far
    return float(p[rows - 1, :rows].mean())


def backward_transfer(matrix: Matrix) -> float:
    """BWT: how much accuracy on earlier tasks changed after learning the later ones (eq. 8)."""
    p = _as_array(matrix)
    t = p.shape[0]
    if t < 2:
        return math.nan
    # eq. 8: BWT = 1/(T-1) sum_{i<T} (P[T, i] - P[i, i])
    return float(np.mean([p[t - 1, i] - p[i, i] for i in range(t - 1)]))


def forward_transfer_paper(matrix: Matrix, joint_accuracy: Sequence[float] | None) -> float:
    """The paper's modified FWT (eq. 7): accuracy on task i when learned, minus joint training's.

    ``joint_accuracy`` holds m_i, the joint (multi-task) model's test accuracy on each task.
    """
    p = _as_array(matrix)
    t = p.shape[0]
    if joint_accuracy is None or t < 2:
        return math.nan
    m = np.asarray(joint_accuracy, dtype=float)
    if m.shape != (p.shape[1],):
        raise ValueError(f"joint accuracies must have one value per task ({p.shape[1]}), got {m.shape}")
    # eq. 7: FWT = 1/(T-1) sum_{i<T} (P[i, i] - m_i)
    return float(np.mean([p[i, i] - m[i] for i in range(t - 1)]))


def forward_transfer_standard(matrix: Matrix, initial_accuracy: Sequence[float] | None) -> float:
    """Standard FWT (Lopez-Paz & Ranzato 2017): accuracy on task i before learning it, minus a
    randomly initialised model's accuracy b_i on it."""
    p = _as_array(matrix)
    t = p.shape[0]
    if initial_accuracy is None or t < 2:
        return math.nan
    b = np.asarray(initial_accuracy, dtype=float)
    # GEM eq. (FWT) = 1/(T-1) sum_{i=2..T} (P[i-1, i] - b_i), here 0-based and on seen rows only
    return float(np.mean([p[i - 1, i] - b[i] for i in range(1, t)]))


def stability(matrix: Matrix) -> float:
    """SMT (supplement eq. 9): mean variance of each task's accuracy after it was learned."""
    p = _as_array(matrix)
    t = p.shape[0]
    if t < 2:
        return math.nan
    # eq. 9: SMT = 1/(T-1) sum_{j<T} D_j, D_j = Var(P[j..T, j]) (population variance)
    return float(np.mean([np.var(p[j:t, j]) for j in range(t - 1)]))


def running_accuracy(row: Sequence[float], task: int) -> float:
    """Mean accuracy over tasks 0..task in one row of the matrix (ACC after task ``task``)."""
    return float(np.mean(np.asarray(row, dtype=float)[: task + 1]))


def summarize(
    matrix: Matrix,
    initial_accuracy: Sequence[float] | None = None,
    joint_accuracy: Sequence[float] | None = None,
) -> dict[str, float]:
    """All metrics of one run. ``fwt`` is the standard FWT; ``fwt_paper`` needs joint accuracies."""
    return {
        "acc": average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "fwt": forward_transfer_standard(matrix, initial_accuracy),
        "fwt_paper": forward_transfer_paper(matrix, joint_accuracy),
        "smt": stability(matrix),
    }

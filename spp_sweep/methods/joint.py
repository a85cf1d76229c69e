"""Joint training (paper section 4.1): every task's data at once, one head per task.

Trained once, at the first step of the sequence, on the union of all tasks (mini-batches of the
tasks interleaved at random); later steps only re-evaluate. Its per-task test accuracies are the
m_i of the paper's FWT (eq. 7), and it is the upper reference every sequential method is held to.
"""

from __future__ import annotations

from .base import Method


class Joint(Method):
    name = "joint"
    summary = "multi-task training on all tasks at once (reference m_i of the paper's FWT)"
    learns_all_tasks_at_once = True

    def tasks_to_train(self, task: int, n_tasks: int) -> list[int]:
        return list(range(n_tasks)) if task == 0 else []

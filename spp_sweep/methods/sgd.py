"""SGD, single-head (paper section 4.1): one output layer shared by all tasks, no regulariser.

Targets are global class ids, so on class-split benchmarks this is class-incremental learning.
"""

from __future__ import annotations

from .base import Method


class SGD(Method):
    name = "sgd"
    summary = "plain SGD with one output layer shared by all tasks (single-head)"
    single_head = True

"""SGD, single-head (paper section 4.1): one output layer shared by all tasks, no regulariser.

By default the shared layer has the task's size and every task keeps its local labels
(``output=shared``: domain-incremental), as the authors' split-MNIST code trains it, which is
what their Table 2 reports (61.5%). ``output=class_incremental`` gives one layer over every
class with global labels, a different (harder) problem; on permuted benchmarks the two coincide.
"""

from __future__ import annotations

from .base import Method


class SingleHeadSGD(Method):
    name = "sgd"
    summary = "plain SGD with one output layer shared by all tasks (single-head, the task's size)"
    default_output = "shared"

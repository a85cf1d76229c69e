"""SGD-F (paper section 4.1): after the first task the shared layers are frozen; only new heads learn."""

from __future__ import annotations

from torch import nn

from .base import Method


class FrozenSGD(Method):
    name = "sgd_frozen"
    summary = "SGD-F: shared layers frozen after the first task, only each new head is trained"

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        if task == 0:
            return list(self.model.parameters())
        return list(self.model.heads[task].parameters())

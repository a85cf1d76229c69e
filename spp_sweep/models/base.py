"""The network every method sees: a shared trunk and one output head per task.

Methods regularise the trunk (the shared parameters, PROTOCOL section 1); heads belong to
their task. Single-head methods (plain SGD) get one head that every task uses.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn


class ContinualModel(nn.Module):
    """``trunk`` maps inputs to features; ``heads[h]`` maps features to task h's logits."""

    def __init__(self, trunk: nn.Module, feature_dim: int, head_sizes: Sequence[int], head_factory=None):
        super().__init__()
        self.trunk = trunk
        make_head = head_factory or (lambda n_out: nn.Linear(feature_dim, n_out))
        self.heads = nn.ModuleList(make_head(n) for n in head_sizes)

    def forward(self, x: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.heads[head](self.trunk(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trunk's parameters: what regularisers protect (heads are task-private)."""
        return list(self.trunk.parameters())

    def named_shared_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, param in self.trunk.named_parameters():
            yield f"trunk.{name}", param

"""Dark Experience Replay++ (Buzzega et al. 2020, NeurIPS, eq. 6).

A reservoir buffer (``memory`` rows in total) keeps samples of the stream with their labels and
the network's outputs (logits) when they were seen. Each step adds to the current loss
  alpha * mean || h(x') - z' ||^2  +  beta * mean CE(h(x''), y''),
where (x', z') and (x'', y'') are two independent draws of the step's size from the buffer (each
row through its own task's head): logits matching (DER, eq. 4) and label replay (the ++ term).
In a stack, each member's buffer, draws, α and β are its own (one penalty per member).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .base import Option, Step
from .buffer import ReplayMethod


class DERpp(ReplayMethod):
    name = "derpp"
    summary = "DER++: replay of stored logits (alpha) and labels (beta) from a reservoir buffer"
    options = {
        "memory": Option(500, "stored samples in total (reservoir over the stream)", 1),
        "alpha": Option(0.1, "weight of the logit-matching term (eq. 6)"),
        "beta": Option(0.5, "weight of the label-replay term (eq. 6)"),
    }
    stackable_options = ("memory", "alpha", "beta")

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        if len({getattr(head, "out_features", None) for head in model.heads}) > 1:
            raise ConfigError("derpp compares stored logits column by column, and this model's heads differ in size; "
                              "use tasks of one size, or output=class_incremental")

    def penalty(self, step: Step) -> torch.Tensor | None:
        size = step.y.shape[-1]
        first = self.draw(size)
        if first is None or first.outputs is None:
            return None
        error = (self.outputs_of(first) - first.outputs) ** 2  # a stack's padding rows: 0 - 0
        matching = error.flatten(-2).sum(-1) / (first.count() * error.shape[-1])  # eq. 4's mean over rows and logits
        second = self.draw(size)
        assert second is not None
        replay = self.rows_loss(second)
        return self.option("alpha", like=matching) * matching + self.option("beta", like=replay) * replay

    def observe(self, step: Step) -> None:
        self.store_stream(step, outputs=True)

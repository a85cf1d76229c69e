"""Dark Experience Replay++ (Buzzega et al. 2020, NeurIPS, eq. 6).

A reservoir buffer (``memory`` rows in total) keeps samples of the stream with their labels and
the network's outputs (logits) when they were seen. Each step adds to the current loss
  alpha * mean || h(x') - z' ||^2  +  beta * mean CE(h(x''), y''),
where (x', z') and (x'', y'') are two independent draws of the step's size from the buffer (each
row through its own task's head): logits matching (DER, eq. 4) and label replay (the ++ term).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Option, Step
from .buffer import ReplayMethod, outputs_of, rows_loss


class DERpp(ReplayMethod):
    name = "derpp"
    summary = "DER++: replay of stored logits (alpha) and labels (beta) from a reservoir buffer"
    options = {
        "memory": Option(500, "stored samples in total (reservoir over the stream)", 1),
        "alpha": Option(0.1, "weight of the logit-matching term (eq. 6)"),
        "beta": Option(0.5, "weight of the label-replay term (eq. 6)"),
    }

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        if len({getattr(head, "out_features", None) for head in model.heads}) > 1:
            raise ConfigError("derpp compares stored logits column by column, and this model's heads differ in size; "
                              "use tasks of one size, or output=class_incremental")

    def penalty(self, step: Step) -> torch.Tensor | None:
        if not len(self.buffer) or self.buffer.outputs is None:
            return None
        rows, index = self.buffer.draw(len(step.y), self.generator)
        matching = F.mse_loss(outputs_of(self.model, rows), self.buffer.outputs[index])
        labelled, _ = self.buffer.draw(len(step.y), self.generator)
        replay = rows_loss(self.model, labelled)
        return self.hparams["alpha"] * matching + self.hparams["beta"] * replay

    def observe(self, step: Step) -> None:
        self.buffer.add_reservoir(step.x, step.y, step.head, self.generator, outputs=step.outputs)

"""Dark Experience Replay++ (Buzzega et al. 2020, NeurIPS, eq. 6).

A reservoir buffer (``memory`` rows in total) keeps samples of the stream with their labels and
the network's outputs (logits) when they were seen. Each step adds to the current loss
  alpha * mean || h(x') - z' ||^2  +  beta * mean CE(h(x''), y''),
where (x', z') and (x'', y'') are two independent draws of the step's size from the buffer (each
row through its own task's head): logits matching (DER, eq. 4) and label replay (the ++ term).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models import ContinualModel
from .base import Method, Option, Rows, Step
from .buffer import Buffer


class DERpp(Method):
    name = "derpp"
    summary = "DER++: replay of stored logits (alpha) and labels (beta) from a reservoir buffer"
    objectives = ("classification",)
    options = {
        "memory": Option(500, "stored samples in total (reservoir over the stream)", 1),
        "alpha": Option(0.1, "weight of the logit-matching term (eq. 6)"),
        "beta": Option(0.5, "weight of the label-replay term (eq. 6)"),
    }
    stackable_options = ()
    stores_examples = True
    stack_refusal = "a stack's members would each need their own buffer, which is not built yet"

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        widths = {getattr(head, "out_features", None) for head in model.heads}
        if len(widths) > 1:
            raise ConfigError("derpp compares stored logits column by column, and this model's heads differ in size; "
                              "use tasks of one size, or output=class_incremental")
        self.buffer = Buffer(self.hparams["memory"])

    def penalty(self, step: Step) -> torch.Tensor | None:
        if not len(self.buffer):
            return None
        size = len(step.y)
        rows, index = self.buffer.draw(size, self.generator)
        matching = F.mse_loss(_outputs(self.model, rows), self.buffer.outputs[index])  # type: ignore[index]
        labelled, _ = self.buffer.draw(size, self.generator)
        replay = F.cross_entropy(_outputs(self.model, labelled), labelled.y)
        return self.hparams["alpha"] * matching + self.hparams["beta"] * replay

    def observe(self, step: Step) -> None:
        self.buffer.add_reservoir(step.x, step.y, step.head, self.generator, outputs=step.outputs)

    def stored_examples(self) -> int:
        return len(self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


def _outputs(model: ContinualModel, rows: Rows) -> torch.Tensor:
    """Each row's logits through its own head, in the rows' order."""
    features = model.trunk(rows.x)
    out = None
    for h in sorted(set(rows.heads.tolist())):
        mine = rows.heads == h
        logits = model.heads[h](features[mine])
        if out is None:
            out = logits.new_zeros((len(rows.y), logits.shape[-1]))
        out[mine] = logits
    assert out is not None
    return out

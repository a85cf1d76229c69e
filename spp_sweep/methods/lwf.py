"""Learning without Forgetting (Li & Hoiem 2017).

Before task t a frozen copy of the network is kept. While training task t, each earlier task j's
head is distilled on the new task's inputs (Li & Hoiem eq. 2, temperature T):
  L_old = lam * sum_{j<t} mean_n [ -sum_c y'_nc log yhat'_nc ],
  y' = softmax(old_j(x) / T),  yhat' = softmax(new_j(x) / T).
The paper's warm-up phase (training only the new head first) is not used.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .base import Method, Option, Step, TaskView


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Li & Hoiem eq. 2: cross-entropy of temperature-softened new outputs against old ones."""
    target = F.softmax(old_logits / temperature, dim=-1)
    return -(target * F.log_softmax(new_logits / temperature, dim=-1)).sum(-1).mean()


class LwF(Method):
    name = "lwf"
    summary = "Learning without Forgetting: distil old heads' outputs on new data, no stored data"
    options = {
        "lam": Option(1.0, "weight lambda_o of the distillation loss"),
        "temperature": Option(2.0, "distillation temperature T (Li & Hoiem used 2)", 0.0, True),
    }

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self.old_model: torch.nn.Module | None = None

    def before_task(self, view: TaskView) -> None:
        if view.index > 0:
            self.old_model = _frozen_copy(self.model)

    def penalty(self, step: Step) -> torch.Tensor | None:
        if self.old_model is None or step.task == 0 or self.hparams["lam"] == 0:
            return None
        with torch.no_grad():
            old_features = self.old_model.trunk(step.x)
        loss = sum(
            distillation_loss(self.model.heads[j](step.features), self.old_model.heads[j](old_features),
                              self.hparams["temperature"])
            for j in range(step.task)
        )
        return self.hparams["lam"] * loss

    def state_dict(self) -> dict[str, Any]:
        return {"old_model": None if self.old_model is None else self.old_model.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.old_model = None
        if state.get("old_model") is not None:
            self.old_model = _frozen_copy(self.model)
            self.old_model.load_state_dict(state["old_model"])


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    old = copy.deepcopy(model).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    return old

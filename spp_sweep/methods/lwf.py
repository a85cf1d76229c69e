"""Learning without Forgetting (Li & Hoiem 2017).

Before task t a frozen copy of the network is kept. While training task t, each earlier task j's
head is distilled on the new task's inputs (Li & Hoiem eq. 2, temperature T):
  L_old = lam * sum_{j<t} mean_n [ -sum_c y'_nc log yhat'_nc ],
  y' = softmax(old_j(x) / T),  yhat' = softmax(new_j(x) / T).
The paper's warm-up phase (training only the new head first) is not used.

Both sides of the distillation come from the same network mode (option ``mode``): ``eval``
(default) compares the functions the two networks compute at test time (no dropout, batch-norm
running statistics), at the cost of one more trunk forward per batch; ``train`` compares them
as trained (dropout, batch statistics; the old copy's running statistics are never used). With
the old targets in eval mode and the new outputs in train mode, as Li & Hoiem's recorded
responses and FACIL do, the loss is non-zero even when nothing has changed yet.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..models import ContinualModel
from .base import Method, Option, Step, TaskView


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Li & Hoiem eq. 2: cross-entropy of temperature-softened new outputs against old ones."""
    target = F.softmax(old_logits / temperature, dim=-1)
    # mean over the batch's samples (the last dimension left): one value per member when stacked
    return -(target * F.log_softmax(new_logits / temperature, dim=-1)).sum(-1).mean(-1)


class LwF(Method):
    name = "lwf"
    summary = "Learning without Forgetting: distil old heads' outputs on new data, no stored data"
    objectives = ("classification",)  # it distils softmax class outputs; a VAE's heads are latent codes
    options = {
        "lam": Option(1.0, "weight lambda_o of the distillation loss"),
        "temperature": Option(2.0, "distillation temperature T (Li & Hoiem used 2)", 0.0, True),
        "mode": Option("eval", "network mode of both sides of the distillation: eval (as tested) or train "
                       "(as trained: dropout, batch statistics)", None, choices=("eval", "train")),
    }
    stackable_options = ("lam",)

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self.old_model: ContinualModel | None = None

    def before_task(self, view: TaskView) -> None:
        if view.index > 0:
            self.old_model = _frozen_copy(self.model)

    def penalty(self, step: Step) -> torch.Tensor | None:
        if self.old_model is None or step.task == 0 or self.option_is_zero("lam"):
            return None
        as_tested = self.hparams["mode"] == "eval"
        self.old_model.train(not as_tested)
        heads = range(step.task) if len(self.model.heads) > 1 else [0]  # one shared head: distil it
        with torch.no_grad():
            old_features = self.old_model.trunk(step.x)
            old = [self.old_model.heads[j](old_features) for j in heads]
        if as_tested and _mode_dependent(self.model):  # as tested, with gradients; then back to training modes
            with _evaluating(self.model):
                features = self.model.trunk(step.x)
                new = [self.model.heads[j](features) for j in heads]
        else:
            new = [self.model.heads[j](step.features) for j in heads]
        loss = cast(torch.Tensor, sum(distillation_loss(n, o, self.hparams["temperature"]) for n, o in zip(new, old)))
        return self.option("lam", like=loss) * loss

    def state_dict(self) -> dict[str, Any]:
        return {"old_model": None if self.old_model is None else self.old_model.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.old_model = None
        if state.get("old_model") is not None:
            self.old_model = _frozen_copy(self.model)
            self.old_model.load_state_dict(state["old_model"])


def _mode_dependent(model: torch.nn.Module) -> bool:
    """Whether eval and train mode compute different functions (dropout, batch norm); where
    not, the training forward's features serve both modes and the extra forward is skipped."""
    return any(isinstance(m, (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm))
               for m in model.modules())


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block, each module's own mode restored after it."""
    modes = [module.training for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in zip(model.modules(), modes):
            module.training = mode


def _frozen_copy(model: ContinualModel) -> ContinualModel:
    old = copy.deepcopy(model).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    return old

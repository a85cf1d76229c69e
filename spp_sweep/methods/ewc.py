"""Elastic Weight Consolidation (Kirkpatrick et al. 2017).

F_k = E_x E_{y~p(y|x)} [(d log p(y|x) / d w_k)^2], the diagonal Fisher at the end of each task,
computed exactly over the head's classes ("true") or at the labels ("empirical"), with per-sample
gradients from torch.func. Penalty (Kirkpatrick eq. 3): lam/2 * sum_t sum_k F_t,k (w_k - w*_t,k)^2.
One accumulated F with the Fisher-weighted mean anchor has exactly the gradient of that sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Option, TaskView
from .gradients import minibatches, per_sample_gradients, per_sample_square_sums, true_fisher_square_sums
from .quadratic import QuadraticPenaltyMethod


class EWC(QuadraticPenaltyMethod):
    name = "ewc"
    summary = "Elastic Weight Consolidation: diagonal Fisher importance, one quadratic penalty per task"
    penalty_scale = 0.5  # Kirkpatrick eq. 3: lambda/2
    # its Fisher is over the classes of a softmax head: a VAE's ELBO has none (use mas or spp)
    objectives = ("classification",)
    weighted_anchor = True
    options = {
        "lam": Option(100.0, "penalty strength lambda of Kirkpatrick eq. 3"),
        "fisher": Option("true", "true: expectation over the model's predictions; empirical: at the labels",
                         choices=("true", "empirical")),
        "fisher_batch_size": Option(100, "mini-batch size of the Fisher pass", 0, True),
        **QuadraticPenaltyMethod.options,
    }

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        total = [torch.zeros_like(p) for p in self.model.shared_parameters()]
        for batch in minibatches(len(view.x), self.hparams["fisher_batch_size"]):
            for acc, square_sum in zip(total, self._batch_fisher(view.head, view.x[batch], view.y[batch])):
                acc += square_sum
        self.model.train(was_training)
        return [acc / len(view.x) for acc in total]  # mean over the task's samples

    def _batch_fisher(self, head: int, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """sum over the batch's samples of (d log p(y|x)/dw)^2, weighted by p(y|x) for the true Fisher."""
        if self.hparams["fisher"] == "empirical":
            fast = per_sample_square_sums(self.model, head, lambda z: _log_likelihoods(z, y), x)
            if fast is not None:
                return fast
            return [g.square().sum(0) for g in per_sample_gradients(self.model, head, _log_likelihood, x, y)]
        fast = true_fisher_square_sums(self.model, head, x)  # every class in one batched backward
        if fast is not None:
            return fast
        with torch.no_grad():
            probs = torch.softmax(self.model(x, head), dim=-1)  # (B, C), or a stack's (K, B, C)
        total: list[torch.Tensor] = []
        for c in range(probs.shape[-1]):  # exact expectation over y ~ p(y|x), one class at a time
            grads = per_sample_gradients(self.model, head, _log_likelihood, x, torch.full_like(y, c))
            weight = probs[..., c] if probs.dim() == 2 else probs[..., c].t()  # (B,), or (B, K) as the gradients
            square_sums = [(weight.view(*weight.shape, *[1] * (g.dim() - weight.dim())) * g.square()).sum(0)
                           for g in grads]
            total = [t + f for t, f in zip(total, square_sums)] if total else square_sums
        return total


def _log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(y_i | x_i) for every sample of a batch (and member of a stack: logits (K, B, C))."""
    labels = labels.expand(logits.shape[:-1])
    return F.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def _log_likelihood(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """log p(label | x) for one sample, written without data-dependent indexing (vmap-safe)."""
    return -F.cross_entropy(logits.unsqueeze(0), label.unsqueeze(0))

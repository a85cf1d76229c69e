"""Memory Aware Synapses (Aljundi et al. 2018).

Omega_k = 1/N sum_n | d ||F(x_n)||_2^2 / d w_k |  (MAS eqs. 2-4): the sensitivity of the squared
L2 norm of the task head's output, label-free, from per-sample gradients (torch.func).
Importances accumulate over tasks; penalty lam * sum_k Omega_k (w_k - w*_k)^2 (MAS eq. 3).
"""

from __future__ import annotations

import torch

from .base import Option, TaskView
from .gradients import minibatches, per_sample_abs_sums, per_sample_gradients
from .quadratic import QuadraticPenaltyMethod


class MAS(QuadraticPenaltyMethod):
    name = "mas"
    summary = "Memory Aware Synapses: label-free sensitivity of the output norm, quadratic penalty"
    options = {
        "lam": Option(1.0, "penalty strength lambda of MAS eq. 3"),
        "importance_batch_size": Option(100, "mini-batch size of the importance pass", 0, True),
        **QuadraticPenaltyMethod.options,
    }

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        total = [torch.zeros_like(p) for p in self.model.shared_parameters()]
        for batch in minibatches(len(view.x), self.hparams["importance_batch_size"]):
            x = view.x[batch]
            # sum_i |g_i|: one matmul per Linear layer (gradients.py), else vectorised per-sample gradients
            sums = per_sample_abs_sums(self.model, view.head, lambda logits: logits.square().sum(-1), x)
            if sums is None:
                grads = per_sample_gradients(self.model, view.head, lambda logits, _: logits.square().sum(), x)
                sums = [g.abs().sum(0) for g in grads]
            for acc, g in zip(total, sums):
                acc += g
        self.model.train(was_training)
        return [acc / len(view.x) for acc in total]

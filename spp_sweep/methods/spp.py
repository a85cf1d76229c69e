"""Soft Parameter Pruning (SPP): label-free, entropy-based importance (paper section 3.2).

After task t, on task t's training inputs only (labels unused), per mini-batch:
  I = -sum_n sum_c q_nc log q_nc     output entropy summed over the batch (authors' code); the
                                    model defines it (ContinualModel.output_entropies): softmax
                                    for classifiers, per-pixel Bernoulli for the VAE (models/vae.py)
  g = dI/dW                           one backward pass per batch
  omega_b = max(0, g*W + W^2 g^2 / 2) eqs. 2-3, Hessian ~ diag Fisher g^2; eq. 3 clips at 0
omega_t is the mean of omega_b over the batches; Omega accumulates (eq. 4) and the penalty is
lam * sum Omega (w - w*)^2 (eq. 5), see quadratic.py.

The sign. Pruning W to 0 is dW = -W, so the second-order change of the entropy I itself is
-g*W + W^2 g^2 / 2. The paper's formula (and the authors' code) has +g*W: it is the change of
H = sum q log q = -I (the negative entropy, as the paper writes H), whose gradient is -g. So
eq. 2-3 rate a weight by how much its removal would *lower* the entropy (make the outputs
more confident), clipped at 0; the quadratic term is the same either way. The option ``sign``
offers the other reading (``entropy``: -g*W, the change of I), and ``clip`` the absolute value
instead of eq. 3's max(0, .), so that both choices can be ablated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError
from .base import Option, TaskView
from .gradients import batch_gradients, minibatches, per_sample_gradients, per_sample_square_sums
from .quadratic import QuadraticPenaltyMethod


def pruning_importance(weight: torch.Tensor, gradient: torch.Tensor, fisher: torch.Tensor | None = None,
                       sign: float = 1.0, clip: str = "zero") -> torch.Tensor:
    """eqs. 2-3: max(0, s*g*W + W^2 * F / 2) with s = +1 (the paper's; module docstring) or -1
    (the change of the positive entropy when W is pruned); ``clip="abs"``: |.| instead of max(0, .).

    With the batch Fisher F = g^2 this is u + u^2/2 for u = s*g*W, computed in that cheaper form.
    """
    u = gradient * weight
    if sign != 1.0:
        u = u.mul_(sign)
    change = u.mul_(0.5 * u + 1.0) if fisher is None else u + 0.5 * weight.square() * fisher  # eq. 2 (F = g^2 or F)
    return change.abs_() if clip == "abs" else change.clamp_min_(0.0)  # eq. 3: max(0, .)


class SPP(QuadraticPenaltyMethod):
    name = "spp"
    summary = "Soft Parameter Pruning: label-free entropy importance, accumulated, quadratic penalty (this paper)"
    options = {
        "lam": Option(4.0, "penalty strength lambda of eq. 5"),
        "importance": Option(
            "batch",
            "batch: gradient of the batch-summed entropy, Fisher g^2 (authors' code); "
            "per_sample: Fisher = sum_i g_i^2 over the batch's samples (torch.func)",
            choices=("batch", "per_sample"),
        ),
        "importance_batch_size": Option(100, "mini-batch size of the importance pass (authors: 100)", 0, True),
        "signal": Option(
            "entropy",
            "what a pruned weight would change (eq. 2's I): entropy of the outputs (the paper's; a VAE's "
            "per-pixel Bernoulli entropy) or, for a VAE, its negative ELBO (label-free too; always with the "
            "batch Fisher)",
            choices=("entropy", "elbo"),
        ),
        "beta": Option(0.0, "the authors' per-tensor normalisation omega <- softmax(beta*omega) (their split-MNIST "
                            "script used 3; it flattens small importances towards 1/size rather than sharpening them); "
                            "0 = off"),
        "sign": Option("paper", "paper: +g*W in eq. 2 (the change of H = sum q log q, as the paper and its code); "
                                "entropy: -g*W (the change of the entropy itself when W is pruned)",
                       choices=("paper", "entropy")),
        "clip": Option("zero", "zero: eq. 3's max(0, .); abs: the absolute value of eq. 2's change",
                       choices=("zero", "abs")),
        "half_lambda": Option(False, "penalty (lam/2) sum Omega (w - w*)^2 as the authors' split-MNIST script; "
                                     "false: eq. 5's lam sum Omega (w - w*)^2"),
        **QuadraticPenaltyMethod.options,
    }

    @property
    def scale(self) -> float:
        return 0.5 if self.hparams["half_lambda"] else 1.0  # eq. 5 has no 1/2; the authors' script has lam/2

    @classmethod
    def check_objective(cls, hparams: Mapping[str, Any], objective: str, usable: Sequence[str]) -> None:
        super().check_objective(hparams, objective, usable)
        if hparams["signal"] == "elbo" and objective != "elbo":
            raise ConfigError(f"spp: signal=elbo needs a generative benchmark (the elbo objective; this one asks for "
                              f"{objective}); use signal=entropy")

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        was_training = self.model.training
        self.model.eval()  # importance of the deterministic network: dropout off
        weights = [p.detach() for p in self.model.shared_parameters()]
        total = [torch.zeros_like(w) for w in weights]
        n_batches = 0
        # I of eq. 2, per sample: the output entropy (section 3.2.1), as the model defines it
        # (softmax for classifiers, per-pixel Bernoulli for the VAE), or for a generator its
        # negative ELBO (signal=elbo, section 4.2.4; check_objective allows it only there)
        elbo = self.hparams["signal"] == "elbo"
        entropies = self.model.output_entropies
        for batch in minibatches(len(view.x), self.hparams["importance_batch_size"]):
            x = view.x[batch]
            signal = self.model.negative_elbos(x, view.head) if elbo else entropies(self.model(x, view.head))
            grads = batch_gradients(self.model, signal.sum())  # g = sum_i g_i
            fishers: Sequence[torch.Tensor | None]
            if self.hparams["importance"] == "batch" or elbo:
                fishers = [None] * len(grads)  # F = g^2, folded into pruning_importance
            else:
                square_sums = per_sample_square_sums(self.model, view.head, entropies, x)  # sum_i g_i^2
                if square_sums is None:  # trunks other than Linear layers: vectorised per-sample gradients
                    per_sample = per_sample_gradients(self.model, view.head,
                                                      lambda logits, _: entropies(logits.unsqueeze(0)).sum(), x)
                    square_sums = [g.square().sum(0) for g in per_sample]
                fishers = square_sums
            sign = 1.0 if self.hparams["sign"] == "paper" else -1.0
            for acc, w, g, f in zip(total, weights, grads, fishers):
                acc += pruning_importance(w, g, f, sign, self.hparams["clip"])
            n_batches += 1
        self.model.train(was_training)
        omega = [acc / n_batches for acc in total]  # mean over the task's mini-batches
        if self.hparams["beta"] > 0:  # optional sharpening of the authors' code, per tensor (and member)
            start = 1 if self.stacked else 0
            omega = [torch.softmax(self.hparams["beta"] * o.flatten(start), -1).view_as(o) for o in omega]
        return omega

"""Synaptic Intelligence (Zenke et al. 2017).

While training task t: omega_k += -g_k * (delta w_k) per optimiser step (Zenke eq. 3), with g the
gradient of the task loss alone (the penalty's analytic gradient is removed, as in the authors' code;
with penalty_step=implicit the gradient holds no penalty, and delta w includes the proximal step).
After the task: Omega_k += omega_k / (Delta_k^2 + xi), Delta_k the total change over the task
(Zenke eq. 5). Penalty c * sum_k Omega_k (w_k - w*_k)^2 (Zenke eq. 4), c exposed as ``lam``.
Checkpoints are taken between tasks, after the path integral was folded into Omega, so the
shared quadratic state is all that needs saving.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Option, TaskView, along_members
from .quadratic import QuadraticPenaltyMethod


class SI(QuadraticPenaltyMethod):
    name = "si"
    summary = "Synaptic Intelligence: importance as the path integral of loss decrease, quadratic penalty"
    options = {
        "lam": Option(1.0, "penalty strength c of Zenke eq. 4"),
        "xi": Option(0.1, "damping xi of Zenke eq. 5", 0.0, True),
        **QuadraticPenaltyMethod.options,
    }
    stackable_options = ("lam", "xi")

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self._start: list[torch.Tensor] = []
        self._previous: list[torch.Tensor] = []
        self._path: list[torch.Tensor] = []

    def before_task(self, view: TaskView) -> None:
        params = [p.detach() for p in self.model.shared_parameters()]
        self._start = [p.clone() for p in params]
        self._previous = [p.clone() for p in params]
        self._path = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def after_step(self, lr: float | torch.Tensor) -> None:
        super().after_step(lr)  # the implicit penalty step first: delta w is the whole step
        if not self.measures_importance:  # lam = 0: no path integral is ever used
            return
        params = self.model.shared_parameters()
        twice_lam = 2.0 * self.option("lam")  # per member (K,) when stacked
        for index, (p, previous, path) in enumerate(zip(params, self._previous, self._path)):
            if p.grad is not None:
                grad = p.grad
                # remove d/dw of the penalty at the pre-step point (only the explicit step put it in the gradient)
                if self.omega is not None and not self.option_is_zero("lam") and not self.implicit:
                    grad = grad - along_members(twice_lam, p) * self.omega[index] * (previous - self.anchor[index])
                path -= grad * (p - previous)  # Zenke eq. 3: omega += -g * dw
            previous.copy_(p)

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        params = [p.detach() for p in self.model.shared_parameters()]
        # Zenke eq. 5: omega / (Delta^2 + xi)
        return [path / ((p - s).square() + self.option("xi", like=p))
                for path, p, s in zip(self._path, params, self._start)]

"""The quadratic anchor penalty that SPP, EWC, MAS and SI share.

After each task the method measures a per-parameter importance ``omega_t``; importances are
accumulated (SPP eq. 4) and new training pays ``scale * lam * sum_k Omega_k (w_k - w*_k)^2``
(SPP eq. 5). Subclasses only say how ``omega_t`` is measured.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch

from .base import Method, Step, TaskView


class QuadraticPenaltyMethod(Method):
    """Accumulated importance ``omega`` and anchor ``anchor`` over the shared parameters."""

    penalty_scale: ClassVar[float] = 1.0
    # False: the anchor is the parameters after the latest task (SPP, MAS, SI).
    # True: the importance-weighted mean of each task's parameters, which makes one
    # accumulated quadratic exactly equal (in gradient) to one penalty per task (EWC).
    weighted_anchor: ClassVar[bool] = False

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self.omega: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] | None = None
        self.last_importance: list[torch.Tensor] | None = None

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        """omega_t for the task just learned, one tensor per shared parameter."""
        raise NotImplementedError

    def after_task(self, view: TaskView) -> None:
        new = [o.detach() for o in self.task_importance(view)]
        params = [p.detach().clone() for p in self.model.shared_parameters()]
        if self.omega is None:
            self.omega, self.anchor = [o.clone() for o in new], params
        else:
            if self.weighted_anchor:
                self.anchor = [
                    torch.where(o + n > 0, (o * a + n * p) / (o + n).clamp_min(1e-30), p)
                    for o, n, a, p in zip(self.omega, new, self.anchor, params)
                ]
            else:
                self.anchor = params
            self.omega = [o + n for o, n in zip(self.omega, new)]  # SPP eq. 4: Omega_{1:t} = Omega_{1:t-1} + omega_t
        self.last_importance = new

    def penalty(self, step: Step) -> torch.Tensor | None:
        lam = self.hparams["lam"]
        if self.omega is None or lam == 0:
            return None
        total = sum(
            (o * (p - a).square()).sum() for o, p, a in zip(self.omega, self.model.shared_parameters(), self.anchor)
        )
        return (self.penalty_scale * lam) * total  # SPP eq. 5: lam * sum_k Omega_k (w_k - w*_k)^2

    def importances(self) -> dict[str, torch.Tensor] | None:
        if self.last_importance is None:
            return None
        names = [name for name, _ in self.model.named_shared_parameters()]
        return dict(zip(names, self.last_importance))

    def state_dict(self) -> dict[str, Any]:
        return {"omega": self.omega, "anchor": self.anchor, "last_importance": self.last_importance}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        device = next(self.model.parameters()).device
        move = lambda tensors: None if tensors is None else [t.to(device) for t in tensors]  # noqa: E731
        self.omega = move(state["omega"])
        self.anchor = move(state["anchor"])
        self.last_importance = move(state["last_importance"])

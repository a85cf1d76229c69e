"""The quadratic anchor penalty that SPP, EWC, MAS and SI share.

After each task the method measures a per-parameter importance ``omega_t``; importances are
accumulated (SPP eq. 4) and new training pays ``scale * lam * sum_k Omega_k (w_k - w*_k)^2``
(SPP eq. 5). Subclasses only say how ``omega_t`` is measured.

How the penalty acts is the option ``penalty_step``:

* ``explicit`` (the paper's): the penalty is added to each mini-batch's loss, so SGD takes a
  gradient step on it. That step, ``w -= lr * 2 s lam Omega (w - w*)``, overshoots the anchor
  once ``lr * 2 s lam Omega > 2`` and the run diverges: at large lam the limit is the
  optimiser's, not the method's.
* ``implicit``: SGD steps on the task loss alone, then the penalty is applied as its exact
  proximal map with the same step size ``lr``: the minimiser of
  ``||w - v||^2 / (2 lr) + s lam Omega (w - w*)^2`` is ``(v + c w*) / (1 + c)`` with
  ``c = 2 lr s lam Omega``. It moves ``w`` towards ``w*`` by a fraction ``c / (1 + c) < 1``, so it
  is stable for every lam, and it agrees with the explicit step to first order in ``c``.
  Defined for plain SGD only (momentum 0): with momentum the velocity would carry the task
  gradient but not the penalty, which is no longer a proximal method of a known objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch

from ..errors import ConfigError
from .base import Method, Option, Step, TaskView, along_members

PENALTY_STEPS = ("explicit", "implicit")


class QuadraticPenaltyMethod(Method):
    """Accumulated importance ``omega`` and anchor ``anchor`` over the shared parameters."""

    # Every subclass lists these after its own options: ``options = {..., **QuadraticPenaltyMethod.options}``.
    options = {
        "penalty_step": Option(
            "explicit",
            "explicit: penalty added to the loss (paper); implicit: exact proximal step after each SGD step, "
            "stable at any lam (plain SGD only)",
            choices=PENALTY_STEPS,
        ),
    }
    stackable_options: ClassVar[tuple[str, ...]] = ("lam",)
    penalty_scale: ClassVar[float] = 1.0
    # False: the anchor is the parameters after the latest task (SPP, MAS, SI).
    # True: the importance-weighted mean of each task's parameters, which makes one
    # accumulated quadratic exactly equal (in gradient) to one penalty per task (EWC).
    weighted_anchor: ClassVar[bool] = False

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self.omega: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] = []  # w*: empty until the first task ends
        self.last_importance: list[torch.Tensor] | None = None

    @classmethod
    def check_training(cls, hparams, *, momentum: float, optimizer: str = "sgd") -> None:
        if hparams.get("penalty_step") == "implicit" and optimizer != "sgd":
            raise ConfigError(
                f"{cls.name}: penalty_step=implicit is the exact proximal step of plain SGD; under {optimizer} the "
                "step is preconditioned per parameter and this form is not derived here: use penalty_step=explicit")
        if hparams.get("penalty_step") == "implicit" and momentum != 0:
            raise ConfigError(
                f"{cls.name}: penalty_step=implicit is the exact proximal step of plain SGD and is not defined "
                f"with momentum={momentum:g}; set momentum to 0 or use penalty_step=explicit")

    @property
    def scale(self) -> float:
        """s of the penalty s * lam * sum Omega (w - w*)^2 (1 for eq. 5; EWC's 1/2)."""
        return self.penalty_scale

    @property
    def implicit(self) -> bool:
        return self.hparams["penalty_step"] == "implicit"

    @property
    def measures_importance(self) -> bool:
        """False when lam = 0 and nobody saves importances: the penalty is off, so measuring
        omega would cost an importance pass per task and change no number (issue 14)."""
        return not self.option_is_zero("lam") or self.record_importances

    def after_task(self, view: TaskView) -> None:
        if not self.measures_importance:
            return
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
        if self.omega is None or self.option_is_zero("lam") or self.implicit:
            return None
        total = cast(torch.Tensor, sum(  # a scalar, or one sum per member in a stacked run
            self.member_sum(o * (p - a).square())
            for o, p, a in zip(self.omega, self.model.shared_parameters(), self.anchor)
        ))
        scale = self.scale * self.option("lam")  # a number, or (K,) in float64 when stacked
        return along_members(scale, total) * total  # SPP eq. 5: lam * sum_k Omega_k (w_k - w*_k)^2

    @torch.no_grad()
    def after_step(self, lr: float | torch.Tensor) -> None:
        """The implicit penalty step (module docstring); nothing with the explicit one."""
        if not self.implicit or self.omega is None or self.option_is_zero("lam"):
            return
        rate = 2.0 * lr * self.scale * self.option("lam")  # per member (K,) when stacked
        for p, o, a in zip(self.model.shared_parameters(), self.omega, self.anchor):
            if p.requires_grad:  # only what the optimiser may change
                c = along_members(rate, o) * o
                # proximal map of eq. 5's penalty: w <- (w + c w*) / (1 + c), c = 2 lr s lam Omega,
                # written w* + (w - w*) / (1 + c): a contraction towards the anchor, finite for any c
                p.sub_(a).div_(c + 1.0).add_(a)

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
        self.anchor = move(state["anchor"]) or []
        self.last_importance = move(state["last_importance"])

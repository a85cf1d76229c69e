"""Adam (Kingma & Ba 2015, Algorithm 1), step for step what ``torch.optim.Adam`` does on a CPU
(its single-tensor path; no weight decay, AMSGrad or maximisation: the engine uses none), for one
model and for a stack of members, without ``torch.optim`` (its first use imports
``torch._dynamo``: seconds in every worker, see sgd.py).

Per parameter, with gradient g at step t (counted per parameter: a head no batch reached takes
no step, as in torch):
  m <- m + (1 - b1)(g - m),  v <- b2 v + (1 - b2) g^2            (Algorithm 1, lines 7-8)
  p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)  (lines 9-11, torch's eps placement)
tests/unit/test_adam.py checks it against ``torch.optim.Adam`` to the bit, and a stack's member
against its separate run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

BETAS = (0.9, 0.999)  # torch's and the paper's defaults
EPS = 1e-8


def _scales(steps: Sequence[int], lr: Sequence[float]) -> tuple[list[float], list[float]]:
    """(-lr / (1 - b1^t), sqrt(1 - b2^t)) per member, in Python floats as torch computes them."""
    beta1, beta2 = BETAS
    return ([-rate / (1 - beta1 ** float(t)) for rate, t in zip(lr, steps)],
            [(1 - beta2 ** float(t)) ** 0.5 for t in steps])


class Adam:
    """The subset of ``torch.optim.Adam``'s interface the engine uses (as sgd.SGD's)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        self.param_groups: list[dict[str, Any]] = [{"params": list(params), "lr": lr}]
        self._state: dict[int, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def zero_grad(self) -> None:
        for p in self.param_groups[0]["params"]:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for i, p in enumerate(self.param_groups[0]["params"]):
            if p.grad is None:  # not reached by this batch: no step, its moments unchanged
                continue
            if i not in self._state:
                self._state[i] = (torch.zeros_like(p), torch.zeros_like(p), [0])
            exp_avg, exp_avg_sq, count = self._state[i]
            count[0] += 1
            exp_avg.lerp_(p.grad, 1 - BETAS[0])
            exp_avg_sq.mul_(BETAS[1]).addcmul_(p.grad, p.grad, value=1 - BETAS[1])
            (step_size,), (correction,) = _scales(count, [lr])
            denom = (exp_avg_sq.sqrt() / correction).add_(EPS)
            p.addcdiv_(exp_avg, denom, value=step_size)


def member_adam_step(p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], lr: Sequence[float],
                     reached: torch.Tensor | None) -> None:
    """One Adam step of every member of a stacked parameter ``p`` (member dimension first), each
    with its own learning rate ``lr[k]`` and step count; ``reached`` (K,) bool: the members whose
    batch reached ``p`` (None: all), the others' slices, moments and counts left unchanged."""
    size = p.shape[0]
    if not state:
        state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p), steps=[0] * size)
    reach = [True] * size if reached is None else reached.tolist()
    state["steps"] = [t + 1 if r else t for t, r in zip(state["steps"], reach)]
    step_size, correction = _scales([max(t, 1) for t in state["steps"]], lr)
    shape = (size, *[1] * (p.dim() - 1))
    exp_avg = state["exp_avg"].lerp(grad, 1 - BETAS[0])
    exp_avg_sq = state["exp_avg_sq"].mul(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
    denom = (exp_avg_sq.sqrt() / torch.tensor(correction, dtype=p.dtype, device=p.device).view(shape)).add_(EPS)
    moved = p + torch.tensor(step_size, dtype=p.dtype, device=p.device).view(shape) * exp_avg / denom
    if reached is None:
        state["exp_avg"], state["exp_avg_sq"] = exp_avg, exp_avg_sq
        p.copy_(moved)
        return
    keep = reached.view(shape)
    state["exp_avg"] = torch.where(keep, exp_avg, state["exp_avg"])
    state["exp_avg_sq"] = torch.where(keep, exp_avg_sq, state["exp_avg_sq"])
    p.copy_(torch.where(keep, moved, p))

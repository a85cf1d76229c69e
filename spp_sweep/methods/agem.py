"""Averaged Gradient Episodic Memory, A-GEM (Chaudhry et al. 2019, ICLR, eq. 11).

After each task, ``memory`` samples of each of its classes are kept (an episodic memory). At every
step, g is the gradient of the current mini-batch's loss and g_ref that of the mean loss on
``memory_batch`` rows drawn from the memory (each through its own task's head). Where the update
would raise the memory's loss (g . g_ref < 0), g is projected (eq. 11):
  g~ = g - (g . g_ref / g_ref . g_ref) g_ref,
else it is used as it is. The dot products run over every parameter with a gradient this step;
in a stack, over each member's own slices (each member projects by its own inequality).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch

from .base import Option, TaskView, along_members
from .buffer import ReplayMethod


class AGEM(ReplayMethod):
    name = "agem"
    summary = "A-GEM: each update projected so the episodic memory's loss does not rise"
    options = {
        "memory": Option(100, "stored samples per class of each finished task", 1),
        "memory_batch": Option(256, "rows drawn from the memory for the reference gradient per step", 1),
    }

    def before_update(self) -> None:
        rows = self.draw(self.hparams["memory_batch"])
        if rows is None:
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        reference = self.rows_loss(rows).sum()  # a stack's members' terms are independent: each its own gradient
        grads = torch.autograd.grad(reference, params, allow_unused=True)
        g_ref = [torch.zeros_like(p) if d is None else d for p, d in zip(params, grads)]
        current = [cast(torch.Tensor, p.grad) for p in params]
        for d, corrected in zip(current, project(current, g_ref, self.member_sum)):
            d.copy_(corrected)

    def after_task(self, view: TaskView) -> None:
        self.store_task(view)


def project(g: Sequence[torch.Tensor], g_ref: Sequence[torch.Tensor],
            total: Callable[[torch.Tensor], torch.Tensor] = torch.sum) -> list[torch.Tensor]:
    """Eq. 11 over a gradient given per parameter: g where g . g_ref >= 0, else g minus its
    component along g_ref. ``total`` sums a product over one parameter (``Method.member_sum``:
    per member in a stack, so each member's slices project by its own dot products)."""
    dot = sum((total(a * b) for a, b in zip(g, g_ref)), torch.zeros(()))
    norm = sum((total(b * b) for b in g_ref), torch.zeros(()))
    factor = torch.where(dot < 0, dot / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(dot))
    return [a - along_members(factor, a) * b for a, b in zip(g, g_ref)]

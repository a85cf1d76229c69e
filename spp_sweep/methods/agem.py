"""Averaged Gradient Episodic Memory, A-GEM (Chaudhry et al. 2019, ICLR, eq. 11).

After each task, ``memory`` samples of each of its classes are kept (an episodic memory). At every
step, g is the gradient of the current mini-batch's loss and g_ref that of the mean loss on
``memory_batch`` rows drawn from the memory (each through its own task's head). Where the update
would raise the memory's loss (g . g_ref < 0), g is projected (eq. 11):
  g~ = g - (g . g_ref / g_ref . g_ref) g_ref,
else it is used as it is. The dot products run over every parameter the optimiser updates.
"""

from __future__ import annotations

from typing import cast

import torch

from .base import Option, TaskView
from .buffer import ReplayMethod, rows_loss


class AGEM(ReplayMethod):
    name = "agem"
    summary = "A-GEM: each update projected so the episodic memory's loss does not rise"
    options = {
        "memory": Option(100, "stored samples per class of each finished task", 1),
        "memory_batch": Option(256, "rows drawn from the memory for the reference gradient per step", 1),
    }

    def before_update(self) -> None:
        if not len(self.buffer):
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        current = [cast(torch.Tensor, p.grad) for p in params]
        rows, _ = self.buffer.draw(self.hparams["memory_batch"], self.generator)
        reference = rows_loss(self.model, rows)
        grads = torch.autograd.grad(reference, params, allow_unused=True)
        g = torch.cat([d.flatten() for d in current])
        g_ref = torch.cat([(torch.zeros_like(p) if d is None else d).flatten() for p, d in zip(params, grads)])
        corrected = project(g, g_ref)
        if corrected is not g:
            start = 0
            for p, d in zip(params, current):
                d.copy_(corrected[start:start + p.numel()].view_as(p))
                start += p.numel()

    def after_task(self, view: TaskView) -> None:
        self.buffer.add_class_balanced(view.x, view.y, view.head, self.generator)


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11: g where g . g_ref >= 0, else g minus its component along g_ref (``g`` itself is
    returned where nothing changes)."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - (dot / torch.dot(g_ref, g_ref)) * g_ref

"""Averaged Gradient Episodic Memory, A-GEM (Chaudhry et al. 2019, ICLR, eq. 11).

After each task, ``memory`` samples of each of its classes are kept (an episodic memory). At every
step, g is the gradient of the current mini-batch's loss and g_ref that of the mean loss on
``memory_batch`` rows drawn from the memory (each through its own task's head). Where the update
would raise the memory's loss (g . g_ref < 0), g is projected (eq. 11):
  g~ = g - (g . g_ref / g_ref . g_ref) g_ref,
else it is used as it is. The dot products run over every parameter the optimiser updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F

from .base import Method, Option, TaskView
from .buffer import Buffer


class AGEM(Method):
    name = "agem"
    summary = "A-GEM: each update projected so the episodic memory's loss does not rise"
    objectives = ("classification",)
    options = {
        "memory": Option(100, "stored samples per class of each finished task", 1),
        "memory_batch": Option(256, "rows drawn from the memory for the reference gradient per step", 1),
    }
    stores_examples = True
    stack_refusal = "a stack's members would each need their own memory and projection, which is not built yet"

    def __init__(self, model, **options: Any):
        super().__init__(model, **options)
        self.buffer = Buffer(self.hparams["memory"])
        self.projected = 0  # steps whose gradient was projected (a diagnostic)

    def before_update(self) -> None:
        if not len(self.buffer):
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        current = [cast(torch.Tensor, p.grad) for p in params]
        g = torch.cat([d.flatten() for d in current])
        rows, _ = self.buffer.draw(self.hparams["memory_batch"], self.generator)
        features = self.model.trunk(rows.x)
        losses = [F.cross_entropy(self.model.heads[h](features[rows.heads == h]), rows.y[rows.heads == h],
                                  reduction="sum") for h in sorted(set(rows.heads.tolist()))]
        reference = cast(torch.Tensor, sum(losses)) / len(rows.y)
        grads = torch.autograd.grad(reference, params, allow_unused=True)
        g_ref = torch.cat([(torch.zeros_like(p) if d is None else d).flatten() for p, d in zip(params, grads)])
        corrected = project(g, g_ref)
        if corrected is not g:
            self.projected += 1
            start = 0
            for p, d in zip(params, current):
                d.copy_(corrected[start:start + p.numel()].view_as(p))
                start += p.numel()

    def after_task(self, view: TaskView) -> None:
        self.buffer.add_class_balanced(view.x, view.y, view.head, self.generator)

    def stored_examples(self) -> int:
        return len(self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11: g where g . g_ref >= 0, else g minus its component along g_ref (``g`` itself is
    returned where nothing changes)."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - (dot / torch.dot(g_ref, g_ref)) * g_ref


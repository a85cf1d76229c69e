"""Plain SGD with momentum, step for step what ``torch.optim.SGD`` does (no weight decay,
dampening or Nesterov: the engine uses none), without ``torch.optim``.

Why not ``torch.optim.SGD`` itself: its first use in a process imports ``torch._dynamo`` (the
optimiser's methods are wrapped to disable it, lazily), 1.2-2.4 s on the project's machine, and
every trial of a sweep runs in a new worker process per phase (bench/phase_cost.py). The update
is the one torch's single-tensor SGD makes, p <- p - lr * g, with momentum b <- m * b + g
(b = g at a parameter's first gradient) and p <- p - lr * b; tests/unit/test_sgd.py checks it
against ``torch.optim.SGD`` to the bit. A stack of configurations has its own per-member form of
the same step (stacked.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class SGD:
    """The subset of ``torch.optim.SGD``'s interface the engine uses: ``param_groups`` (one
    group; its ``lr`` is set per epoch), ``zero_grad`` and ``step``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0) -> None:
        self.param_groups: list[dict[str, Any]] = [{"params": list(params), "lr": lr, "momentum": momentum}]
        self._buffers: dict[int, torch.Tensor] = {}  # momentum buffers, by the parameter's index

    def zero_grad(self) -> None:
        """Gradients to None (torch.optim's default, ``set_to_none=True``)."""
        for p in self.param_groups[0]["params"]:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum = group["lr"], group["momentum"]
        for i, p in enumerate(group["params"]):
            if p.grad is None:  # a head this batch did not reach: no step, its buffer unchanged
                continue
            update = p.grad
            if momentum != 0:
                buffer = self._buffers.get(i)
                if buffer is None:
                    buffer = self._buffers[i] = torch.clone(update).detach()
                else:
                    buffer.mul_(momentum).add_(update)
                update = buffer
            p.add_(update, alpha=-lr)

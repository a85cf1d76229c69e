"""Vectorised gradient passes shared by the importance-based methods.

``batch_gradients`` is one backward pass per mini-batch (SPP as in the authors' code);
``per_sample_gradients`` uses torch.func (vmap over grad) so that per-sample quantities such
as a diagonal Fisher come from one vectorised call per mini-batch, not a Python loop.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.func import functional_call, grad, vmap

from ..models import ContinualModel


def minibatches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batch_gradients(model: ContinualModel, objective: torch.Tensor) -> list[torch.Tensor]:
    """Gradient of a scalar ``objective`` w.r.t. the shared (trunk) parameters."""
    return list(torch.autograd.grad(objective, model.shared_parameters()))


def per_sample_gradients(
    model: ContinualModel,
    head: int,
    sample_objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Gradients of ``sample_objective(logits_i, y_i)`` for every sample i, stacked on dim 0.

    Returns one tensor per shared parameter with shape (batch, *param.shape). The model is
    evaluated in its current mode; call it in eval mode so dropout does not differ per sample.
    """
    shared = {name: p.detach() for name, p in model.named_shared_parameters()}
    rest = {name: p.detach() for name, p in model.named_parameters() if name not in shared}
    buffers = dict(model.named_buffers())
    targets = y if y is not None else torch.zeros(len(x), dtype=torch.long, device=x.device)

    def objective(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, rest, buffers), (xi.unsqueeze(0), head))
        return sample_objective(logits.squeeze(0), yi)

    grads = vmap(grad(objective), in_dims=(None, 0, 0))(shared, x, targets)
    return [grads[name] for name in shared]

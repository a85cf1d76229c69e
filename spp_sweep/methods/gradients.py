"""Vectorised gradient passes shared by the importance-based methods.

``batch_gradients`` is one backward pass per mini-batch (SPP as in the authors' code);
``per_sample_gradients`` uses torch.func (vmap over grad) so that per-sample quantities such
as a diagonal Fisher come from one vectorised call per mini-batch, not a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..models import ContinualModel
from ..models.base import linear_input_rank


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

    Returns one tensor per shared parameter with shape (batch, *param.shape) (a stack's
    parameters have the member dimension first: (batch, K, ...), each member's gradient of its
    own objective). The model is evaluated in its current mode; call it in eval mode so dropout
    does not differ per sample.
    """
    shared = {name: p.detach() for name, p in model.named_shared_parameters()}
    rest = {name: p.detach() for name, p in model.named_parameters() if name not in shared}
    buffers = dict(model.named_buffers())
    targets = y if y is not None else torch.zeros(len(x), dtype=torch.long, device=x.device)

    def objective(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, rest, buffers), (xi.unsqueeze(0), head))
        if logits.dim() == 3:  # a stack's (K, 1, C): one term per member, so member k's slice is its own gradient
            return vmap(sample_objective, in_dims=(0, None))(logits[:, 0], yi).sum()
        return sample_objective(logits.squeeze(0), yi)

    grads = vmap(grad(objective), in_dims=(None, 0, 0))(shared, x, targets)
    return [grads[name] for name in shared]


def per_sample_square_sums(
    model: ContinualModel,
    head: int,
    sample_objectives: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
) -> list[torch.Tensor] | None:
    """sum_i (d l_i / d w)^2 for every shared parameter (see :func:`per_sample_linear_sums`)."""
    return per_sample_linear_sums(model, head, sample_objectives, x, torch.square)


def per_sample_abs_sums(
    model: ContinualModel,
    head: int,
    sample_objectives: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
) -> list[torch.Tensor] | None:
    """sum_i |d l_i / d w| for every shared parameter (see :func:`per_sample_linear_sums`)."""
    return per_sample_linear_sums(model, head, sample_objectives, x, torch.abs)


def per_sample_linear_sums(
    model: ContinualModel,
    head: int,
    sample_objectives: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    magnitude: Callable[[torch.Tensor], torch.Tensor],
) -> list[torch.Tensor] | None:
    """sum_i m(d l_i / d w) for every shared parameter, m = square or abs, where
    l = sample_objectives(logits) has one entry per sample, without materialising per-sample
    gradients.

    For a Linear layer the per-sample weight gradient is delta_i a_i^T (delta: gradient at the
    layer's output, a: its input), and m(u v) = m(u) m(v) for both magnitudes, so
    sum_i m(delta_i a_i^T) = m(delta)^T m(a): one matmul (bias: sum_i m(delta_i)).
    Exact when every shared parameter sits in an nn.Linear fed (batch, features) inputs and no
    layer mixes samples; returns None otherwise, and callers fall back to per_sample_gradients.
    """
    forward = _linear_forward(model, head, x)
    if forward is None:
        return None
    linears, seen, logits = forward
    deltas = torch.autograd.grad(sample_objectives(logits).sum(), [seen[m][1] for m in linears])
    sums: dict[int, torch.Tensor] = {}
    for module, delta in zip(linears, deltas):
        d, a = magnitude(delta), magnitude(seen[module][0].detach())
        sums[id(module.weight)] = d.transpose(-1, -2) @ a  # (a batched matmul per member when stacked)
        if module.bias is not None:
            sums[id(module.bias)] = d.sum(-2)
    return [sums[id(p)] for p in model.shared_parameters()]


def true_fisher_square_sums(model: ContinualModel, head: int, x: torch.Tensor) -> list[torch.Tensor] | None:
    """sum_i sum_c p(c|x_i) (d log p(c|x_i) / d w)^2 for every shared parameter: the exact
    ("true") Fisher of EWC summed over a batch, with every class in one batched backward.

    Class c's weighted per-sample gradient at a Linear layer is delta_ic a_i^T, where a_i, the
    layer's input, does not depend on c; so sum_c sum_i (delta_ic a_i^T)^2 =
    (sum_c delta_ic^2)^T (a_i^2): one forward, one backward batched over the C classes
    (``is_grads_batched``), one matmul per layer, instead of C forward-backward passes. At the
    logits, d/dz [sqrt(p_ic) log p(c|x_i)] = sqrt(p_ic) (e_c - p_i), p held fixed (it weights the
    expectation, Kirkpatrick eq. 3's F = E_y[(d log p / dw)^2]). None where the Linear fast
    path does not apply (callers then loop over classes with per-sample gradients).
    """
    forward = _linear_forward(model, head, x)
    if forward is None:
        return None
    linears, seen, logits = forward
    probs = torch.softmax(logits.detach(), dim=-1)  # (batch, C), or (K, batch, C) stacked
    n_classes = probs.shape[-1]
    eye = torch.eye(n_classes, dtype=probs.dtype, device=probs.device).view(n_classes, *[1] * (probs.dim() - 1),
                                                                            n_classes)
    # grad_outputs[c, ..., i, :] = sqrt(p_ic) (e_c - p_i)
    grad_outputs = probs.movedim(-1, 0).sqrt().unsqueeze(-1) * (eye - probs.unsqueeze(0))
    deltas = torch.autograd.grad(logits, [seen[m][1] for m in linears], grad_outputs=grad_outputs,
                                 is_grads_batched=True)
    sums: dict[int, torch.Tensor] = {}
    for module, delta in zip(linears, deltas):
        d = delta.square().sum(0)  # (batch, out): sum over classes of delta_ic^2 (K leading when stacked)
        sums[id(module.weight)] = d.transpose(-1, -2) @ seen[module][0].detach().square()
        if module.bias is not None:
            sums[id(module.bias)] = d.sum(-2)
    return [sums[id(p)] for p in model.shared_parameters()]


def _linear_forward(
    model: ContinualModel, head: int, x: torch.Tensor
) -> tuple[list[nn.Module], dict[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None:
    """The trunk's Linear layers, each one's (input, output) in a forward pass, and the logits;
    None unless every shared parameter sits in a linear layer fed inputs of the rank it declares
    (models.base.linear_input_rank: (batch, features) for nn.Linear, (members, batch, features)
    for a stacked model's layers)."""
    linears = [m for shared in model.shared_modules() for m in shared.modules() if linear_input_rank(m)]
    covered = {id(p) for m in linears for p in m.parameters()}
    if not linears or any(id(p) not in covered for p in model.shared_parameters()):
        return None
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out))) for m in linears]
    try:
        logits = model(x, head)
    finally:
        for handle in handles:
            handle.remove()
    if any(m not in seen or seen[m][0].dim() != linear_input_rank(m) for m in linears):
        return None
    return linears, seen, logits

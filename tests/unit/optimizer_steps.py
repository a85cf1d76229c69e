"""One scenario for comparing an optimiser with torch.optim's step for step (test_sgd.py,
test_adam.py): a two-layer trunk and two heads, a head that some steps do not reach (no
gradient, so no step), and the learning rate changed half-way, as a new epoch's decay would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def same_steps(ours_of: Callable[[list[torch.Tensor]], Any], theirs_of: Callable[[list[torch.Tensor]], Any],
               reached: Callable[[int], int], steps: int = 12) -> None:
    """Train two copies of the same parameters with two optimisers on the same batches and
    assert they end equal to the bit. ``reached(step)``: the head that step's batch reaches."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    heads = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    ours = [p.detach().clone().requires_grad_() for m in (model, *heads) for p in m.parameters()]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    pairs = ((ours, ours_of(ours)), (theirs, theirs_of(theirs)))
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        head = reached(step)
        x = torch.randn(8, 5, generator=generator)
        for params, optimizer in pairs:
            if step == steps // 2:  # a new epoch's decayed lr
                optimizer.param_groups[0]["lr"] *= 0.4
            optimizer.zero_grad()  # torch's default: set_to_none
            hidden = torch.relu(x @ params[0].T + params[1]) @ params[2].T + params[3]
            weight, bias = params[4 + 2 * head], params[5 + 2 * head]
            (hidden @ weight.T + bias).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)

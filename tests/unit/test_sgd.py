"""spp_sweep.sgd.SGD against torch.optim.SGD, to the bit: the same parameters after the same
gradients, with and without momentum, with a parameter that misses some steps (a head its batch
did not reach), and with the lr changed between epochs."""

from __future__ import annotations

import pytest
import torch

from spp_sweep.sgd import SGD


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_same_steps_as_torch_optim_sgd(momentum: float) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    heads = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    ours = [p.detach().clone().requires_grad_() for m in (model, *heads) for p in m.parameters()]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    mine, reference = SGD(ours, lr=0.1, momentum=momentum), torch.optim.SGD(theirs, lr=0.1, momentum=momentum)
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        head = step % 2  # each head reached every other step: the other has no gradient then
        x = torch.randn(8, 5, generator=generator)
        for params, optimizer in ((ours, mine), (theirs, reference)):
            if step == 6:  # a new epoch's decayed lr
                optimizer.param_groups[0]["lr"] = 0.05
            optimizer.zero_grad()  # torch's default: set_to_none
            hidden = torch.relu(x @ params[0].T + params[1]) @ params[2].T + params[3]
            weight, bias = params[4 + 2 * head], params[5 + 2 * head]
            (hidden @ weight.T + bias).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)

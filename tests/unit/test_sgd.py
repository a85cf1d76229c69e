"""spp_sweep.sgd.SGD against torch.optim.SGD, to the bit: the same parameters after the same
gradients, with and without momentum, with a parameter that misses some steps (a head its batch
did not reach), and with the lr changed between epochs."""

from __future__ import annotations

import pytest
import torch

from spp_sweep.sgd import SGD

from .optimizer_steps import same_steps


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_same_steps_as_torch_optim_sgd(momentum: float) -> None:
    # each head reached every other step: the other has no gradient then
    same_steps(lambda params: SGD(params, lr=0.1, momentum=momentum),
               lambda params: torch.optim.SGD(params, lr=0.1, momentum=momentum), reached=lambda step: step % 2)

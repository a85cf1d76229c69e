"""K independent copies of one MLP as a single batched network (issue 14's stacked runs).

Every weight gets a leading member dimension K and every matmul becomes a batched matmul, so
K small trainings cost about one launch sequence instead of K. Members are mathematically
independent: no operation mixes the member dimension, so member k's outputs, gradients and
updates depend on member k's parameters and data alone (a NaN in one member stays there).

Only trunks made of Flatten, Linear, ReLU and Dropout are stacked (the MLP of the digits,
MNIST and array benchmarks); any other layer (convolutions, batch norm, a VAE) is refused with
the reason, and such runs train one configuration per trial. Module names are the unstacked
model's (``trunk.1.weight``), so member k's slice of every tensor is its own model's tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ..errors import ConfigError
from .base import ContinualModel

STACKABLE_LAYERS = (nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout)


class StackedLinear(nn.Module):
    """K Linear layers: weight (K, out, in), bias (K, out); input (K, B, in) -> (K, B, out)."""

    linear_input_rank = 3  # models.base.linear_input_rank: what the vectorised importance passes ask

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        has_bias = layers[0].bias is not None
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])) if has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class MemberInput(nn.Module):
    """The trunk's Flatten: (K, B, *shape) inputs, or (B, *shape) shared by every member
    (evaluation, importance passes), become (K, B, features)."""

    def __init__(self, members: int, input_dims: int):
        super().__init__()
        self.members, self.input_dims = members, input_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.input_dims + 1:  # one batch for every member
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        return x.flatten(2)


class MemberDropout(nn.Dropout):
    """Dropout whose mask for member k comes from member k's own generator, drawn exactly as
    ``nn.Dropout`` draws it on CPU (a (rows, features) Bernoulli(1 - p) tensor divided by 1 - p),
    so a stacked member sees the masks of its separate run. ``rows`` (set by the engine for a
    step whose members have batches of different sizes, joint training) says how many rows of
    each member's padded batch are real."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__(p)  # a Dropout to every isinstance check (LwF's mode-dependence test)
        self.generators = generators
        self.rows: list[int] | None = None

    def __deepcopy__(self, memo: dict) -> MemberDropout:
        """A copy (LwF's old network) draws from the same generators, as an unstacked copy
        draws from the one global generator."""
        clone = MemberDropout(self.p, self.generators)
        clone.train(self.training)
        return clone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        rows = self.rows or [x.shape[1]] * x.shape[0]
        noise = x.new_zeros(x.shape)
        for k, (generator, n) in enumerate(zip(self.generators, rows)):
            mask = torch.empty((n, *x.shape[2:]), dtype=x.dtype).bernoulli_(keep, generator=generator)
            noise[k, :n] = mask.div_(keep)
        return x * noise


class StackedModel(ContinualModel):
    """``members`` MLPs as one: trunk and heads with a leading member dimension."""

    def __init__(self, models: Sequence[ContinualModel], generators: list[torch.Generator], input_dims: int):
        nn.Module.__init__(self)
        self.members = len(models)
        trunks = [cast(nn.Sequential, m.trunk) for m in models]  # stack_refusal: every trunk is a Sequential
        self.trunk = nn.Sequential(*[_stack_layer([t[i] for t in trunks], generators, input_dims)
                                     for i in range(len(trunks[0]))])
        self.heads = nn.ModuleList(StackedLinear([cast(nn.Linear, m.heads[h]) for m in models])
                                   for h in range(len(models[0].heads)))
        self.norm_stats = {}

    def set_rows(self, rows: list[int] | None) -> None:
        """Real rows per member of the next training batch (None: all rows)."""
        for module in self.trunk.modules():
            if isinstance(module, MemberDropout):
                module.rows = rows

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's parameters under the unstacked model's names (load into ``build_model``'s model)."""
        return {name: tensor[k].detach().clone() for name, tensor in self.state_dict().items()}


def stack_refusal(model: ContinualModel) -> str | None:
    """Why ``model`` cannot be stacked, or None."""
    trunk = model.trunk
    if type(model) is not ContinualModel or not isinstance(trunk, nn.Sequential):
        return f"only MLP trunks are stacked, and this model is a {type(model).__name__}"
    odd = sorted({type(m).__name__ for m in trunk if not isinstance(m, STACKABLE_LAYERS)})
    if odd:
        return f"only MLP trunks (Linear, ReLU, Dropout) are stacked; this trunk has {', '.join(odd)}"
    if not len(trunk) or not isinstance(trunk[0], nn.Flatten):
        return "a stacked MLP trunk must start with Flatten"
    if any(not isinstance(head, nn.Linear) for head in model.heads):
        return "only Linear output heads are stacked"
    return None


def _stack_layer(layers: list[nn.Module], generators: list[torch.Generator], input_dims: int) -> nn.Module:
    first = layers[0]
    if isinstance(first, nn.Flatten):
        return MemberInput(len(layers), input_dims)
    if isinstance(first, nn.Linear):
        return StackedLinear([cast(nn.Linear, layer) for layer in layers])
    if isinstance(first, nn.Dropout):
        return MemberDropout(first.p, generators)
    if isinstance(first, nn.ReLU):
        return nn.ReLU()
    raise ConfigError(f"cannot stack a {type(first).__name__} layer")  # stack_refusal says so first

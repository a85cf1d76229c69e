"""The network every method sees: a shared trunk and one output head per task.

Methods regularise the trunk (the shared parameters, PROTOCOL section 1); heads belong to
their task. Single-head methods (plain SGD) get one head that every task uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

# Containers whose forward only chains their children, adds residuals and flattens at the end
# (torchvision's ResNet and its blocks): a stack stacks their children and runs their own code
# unchanged (models/batched.py). A model builder registers the ones it uses when it imports them.
CHAIN_CONTAINERS: set[type[nn.Module]] = set()


def register_chain_containers(*types: type[nn.Module]) -> None:
    """Let stacks look inside these containers (``CHAIN_CONTAINERS``)."""
    CHAIN_CONTAINERS.update(types)


class ContinualModel(nn.Module):
    """``trunk`` maps inputs to features; ``heads[h]`` maps features to task h's logits."""

    trunk: nn.Module
    heads: nn.ModuleList

    def __init__(self, trunk: nn.Module, feature_dim: int, head_sizes: Sequence[int], head_factory=None):
        super().__init__()
        self.trunk = trunk
        make_head = head_factory or (lambda n_out: nn.Linear(feature_dim, n_out))
        self.heads = nn.ModuleList(make_head(n) for n in head_sizes)
        # Per task, the batch-norm running statistics it was trained with (empty without BN).
        self.norm_stats: dict[int, dict[str, torch.Tensor]] = {}
        # True: the one output layer every task shares is a shared parameter too (RunConfig.penalise_head)
        self.head_is_shared = False

    def forward(self, x: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.heads[head](self.trunk(x))

    def negative_elbos(self, x: torch.Tensor, head: int) -> torch.Tensor:
        """Per sample, a generator's negative ELBO (SPP's ``signal=elbo``); only the VAE has one."""
        raise NotImplementedError(f"{type(self).__name__} is no generator: it has no ELBO")

    def output_entropies(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per sample, the Shannon entropy of the softmax over ``outputs`` (SPP's label-free
        uncertainty, section 3.2.1). Models whose outputs are not class logits say their own."""
        log_q = torch.log_softmax(outputs, dim=-1)
        return -(log_q.exp() * log_q).sum(-1)

    def shared_modules(self) -> list[nn.Module]:
        """What regularisers protect: the trunk (heads are task-private), and the single output
        layer when every task shares it and the run asks for it (``head_is_shared``)."""
        return [self.trunk, self.heads[0]] if self.head_is_shared else [self.trunk]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [param for _, param in self.named_shared_parameters()]

    def named_shared_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, param in self.trunk.named_parameters():
            yield f"trunk.{name}", param
        if self.head_is_shared:
            for name, param in self.heads[0].named_parameters():
                yield f"heads.0.{name}", param

    def _norm_buffers(self) -> dict[str, torch.Tensor]:
        return {name: buffer for name, buffer in self.named_buffers()
                if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}

    def remember_norm_stats(self, task: int) -> None:
        """Keep the BN running statistics as they are after training ``task`` (engine, after each task)."""
        buffers = self._norm_buffers()
        if buffers:
            self.norm_stats[task] = {name: b.detach().clone() for name, b in buffers.items()}

    @contextmanager
    def norm_stats_of(self, task: int) -> Iterator[None]:
        """Evaluate with ``task``'s own BN statistics (current ones for a task not trained yet)."""
        saved = self.norm_stats.get(task)
        if saved is None:
            yield
            return
        buffers = self._norm_buffers()
        current = {name: b.clone() for name, b in buffers.items()}
        for name, b in buffers.items():
            b.copy_(saved[name])
        try:
            yield
        finally:
            for name, b in buffers.items():
                b.copy_(current[name])


def linear_input_rank(module: nn.Module) -> int | None:
    """The rank of the inputs a linear layer takes, or None for any other module: 2 for
    ``nn.Linear`` ((batch, features)); a layer that is linear in another layout says so with a
    class attribute ``linear_input_rank`` (models/batched.py's StackedLinear: 3, (members, batch,
    features)). The vectorised importance passes (methods/gradients.py) ask this, not the class."""
    if isinstance(module, nn.Linear):
        return 2
    rank = getattr(type(module), "linear_input_rank", None)
    return rank if isinstance(rank, int) else None

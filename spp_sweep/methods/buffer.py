"""The stored samples of the replay methods (er.py, agem.py, derpp.py): one buffer, filled by
reservoir sampling over the stream or class by class at each task's end, drawn from with the
method's generator (``Method.generator``: seeded from the run's seed, checkpointed by the engine).

Reservoir sampling (Vitter 1985, algorithm R): the n-th sample seen (from 0) is stored while the
buffer has room, else it replaces slot j, j uniform in 0..n, when j < capacity; every sample
seen so far is then in the buffer with probability capacity / seen. Class-balanced: after a task,
``per_class`` samples of each of its classes, drawn uniformly without replacement (all of a class
that has fewer), as the episodic memories of A-GEM and of van de Ven et al.'s reference code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..benchmarks.base import Inputs
from ..models import ContinualModel
from .base import Method, Rows

BUFFERS = ("class_balanced", "reservoir")


class Buffer:
    """Rows of (input, label as its head knows it, head, and optionally the outputs then)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # reservoir: in total; class-balanced: per class
        self.x: torch.Tensor | None = None
        self.y = torch.zeros(0, dtype=torch.long)
        self.heads = torch.zeros(0, dtype=torch.long)
        self.outputs: torch.Tensor | None = None
        self.seen = 0  # samples the reservoir has been offered

    def __len__(self) -> int:
        return len(self.y)

    def add_reservoir(self, x: torch.Tensor, y: torch.Tensor, head: int, generator: torch.Generator,
                      outputs: torch.Tensor | None = None) -> None:
        """Offer a mini-batch to the reservoir (algorithm R), one sample after the other."""
        x, y = x.detach(), y.detach()
        outputs = None if outputs is None else outputs.detach()
        draws = torch.rand(len(y), generator=generator, dtype=torch.float64).tolist()
        room = max(0, min(len(y), self.capacity - self.seen))  # the first samples fill the free slots
        if room:
            self._append(x[:room], y[:room], head, None if outputs is None else outputs[:room])
        for i in range(room, len(y)):
            slot = int(draws[i] * (self.seen + i + 1))  # uniform in 0..n for the n-th sample seen
            if slot < self.capacity:
                assert self.x is not None
                self.x[slot], self.y[slot], self.heads[slot] = x[i], y[i], head
                if outputs is not None and self.outputs is not None:
                    self.outputs[slot] = outputs[i]
        self.seen += len(y)

    def add_class_balanced(self, x: Inputs, y: torch.Tensor, head: int, generator: torch.Generator) -> None:
        """Store ``capacity`` samples of each class of a finished task (uniform, without
        replacement; a task streamed from image files has only those decoded)."""
        chosen = []
        for label in torch.unique(y).tolist():
            where = torch.nonzero(y == label).flatten()
            chosen.append(where[torch.randperm(len(where), generator=generator)[: self.capacity].to(where.device)])
        index = torch.cat(chosen)
        self._append(x[index].detach(), y[index].detach(), head, None)

    def draw(self, count: int, generator: torch.Generator) -> tuple[Rows, torch.Tensor]:
        """(``count`` stored rows, all of them where fewer, uniform without replacement; their
        positions in the buffer, for what else was stored with them)."""
        assert self.x is not None
        chosen = torch.randperm(len(self), generator=generator)[:count].to(self.y.device)
        return Rows(self.x[chosen], self.y[chosen], self.heads[chosen]), chosen

    def _append(self, x: torch.Tensor, y: torch.Tensor, head: int, outputs: torch.Tensor | None) -> None:
        if self.x is None:  # the first rows fix the shapes and the device
            self.x = x[:0].clone()
            self.y, self.heads = self.y.to(x.device), self.heads.to(x.device)
            self.outputs = None if outputs is None else outputs[:0].clone()
        self.x = torch.cat([self.x, x])
        self.y = torch.cat([self.y, y.to(self.y.dtype)])
        self.heads = torch.cat([self.heads, torch.full((len(y),), head, device=self.heads.device)])
        if outputs is not None and self.outputs is not None:
            self.outputs = torch.cat([self.outputs, outputs])

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "heads": self.heads, "outputs": self.outputs,
                "seen": torch.tensor(self.seen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.x, self.y, self.heads, self.outputs = state["x"], state["y"], state["heads"], state["outputs"]
        self.seen = int(state["seen"])



class ReplayMethod(Method):
    """What every method with a buffer shares: the buffer (``memory`` rows, an option of each),
    its size as the examples the method keeps, and its checkpoint."""

    objectives = ("classification",)
    stores_examples = True
    stack_refusal = "a stack's members would each need their own buffer, which is not built yet"

    def __init__(self, model: ContinualModel, **options: Any):
        super().__init__(model, **options)
        self.buffer = Buffer(self.hparams["memory"])

    def stored_examples(self) -> int:
        return len(self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


def outputs_of(model: ContinualModel, rows: Rows) -> torch.Tensor:
    """Each stored row's outputs through its own task's head, in the rows' order (one trunk pass)."""
    features = model.trunk(rows.x)
    out: torch.Tensor | None = None
    for h in sorted(set(rows.heads.tolist())):
        mine = rows.heads == h
        logits = model.heads[h](features[mine])
        if out is None:
            out = logits.new_zeros((len(rows.y), logits.shape[-1]))
        out[mine] = logits
    assert out is not None
    return out


def rows_loss(model: ContinualModel, rows: Rows) -> torch.Tensor:
    """The mean cross-entropy of stored rows, each through its own task's head (heads may differ
    in size: one trunk pass, one loss per head's rows)."""
    features = model.trunk(rows.x)
    total = features.new_zeros(())
    for h in sorted(set(rows.heads.tolist())):
        mine = rows.heads == h
        total = total + torch.nn.functional.cross_entropy(model.heads[h](features[mine]), rows.y[mine],
                                                          reduction="sum")
    return total / len(rows.y)

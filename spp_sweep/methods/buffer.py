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
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..benchmarks.base import Inputs
from ..models import ContinualModel
from .base import PER_MEMBER, Method, Rows, Step, TaskView, per_member, trunk_features

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
        """Offer a mini-batch to the reservoir (algorithm R), as if one sample after the other:
        one draw per sample, and where two samples draw the same slot the later one stays."""
        x, y = x.detach(), y.detach()
        outputs = None if outputs is None else outputs.detach()
        draws = torch.rand(len(y), generator=generator, dtype=torch.float64)
        room = max(0, min(len(y), self.capacity - self.seen))  # the first samples fill the free slots
        if room:
            self._append(x[:room], y[:room], head, None if outputs is None else outputs[:room])
        position = torch.arange(len(y))
        slot = (draws * (position + self.seen + 1)).long()  # uniform in 0..n for the n-th sample seen
        kept = (position >= room) & (slot < self.capacity)
        if kept.any():
            assert self.x is not None
            last = torch.full((self.capacity,), -1).scatter_reduce(0, slot[kept], position[kept], "amax")
            slots = torch.nonzero(last >= 0).flatten()
            source = last[slots].to(self.y.device)
            slots = slots.to(self.y.device)
            self.x[slots], self.y[slots], self.heads[slots] = x[source], y[source].to(self.y.dtype), head
            if outputs is not None and self.outputs is not None:
                self.outputs[slots] = outputs[source]
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

    def draw(self, count: int, generator: torch.Generator) -> Rows:
        """``count`` stored rows (all of them where fewer), uniform without replacement, with
        the outputs stored with them."""
        assert self.x is not None
        chosen = torch.randperm(len(self), generator=generator)[:count].to(self.y.device)
        return Rows(self.x[chosen], self.y[chosen], self.heads[chosen],
                    None if self.outputs is None else self.outputs[chosen])

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
    """What every method with a buffer shares: one buffer per member (``memory`` rows, an option
    of each, may differ between a stack's members), each drawn from with that member's generator
    exactly as its separate run draws; the rows of all members joined into one padded batch; the
    buffer's size as the examples the method keeps; its checkpoint."""

    objectives = ("classification",)
    stores_examples = True
    stackable_options: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, model: ContinualModel, **options: Any):
        super().__init__(model, **options)
        self._buffers: list[Buffer] | None = None

    @property
    def buffers(self) -> list[Buffer]:
        """Each member's buffer (built at first use: a stack sets its members' options after ``__init__``)."""
        if self._buffers is None:
            self._buffers = [Buffer(int(size)) for size in self.member_values("memory")]
        return self._buffers

    def draw(self, count: int) -> Rows | None:
        """``count`` rows of each member's buffer (Buffer.draw), drawn with its own generator; a
        stack's joined and padded (``Rows.counts``); None while every buffer is empty."""
        drawn = [buffer.draw(count, generator) if len(buffer) else None
                 for buffer, generator in zip(self.buffers, self.generators)]
        if not self.stacked:
            return drawn[0]
        present = [rows for rows in drawn if rows is not None]
        if not present:
            return None
        like, width = present[0], max(len(rows.y) for rows in present)
        x = like.x.new_zeros((len(drawn), width, *like.x.shape[1:]))
        y, heads = like.y.new_zeros((len(drawn), width)), like.heads.new_zeros((len(drawn), width))
        outputs = None if like.outputs is None else like.outputs.new_zeros((len(drawn), width, *like.outputs.shape[1:]))
        for k, rows in enumerate(drawn):
            if rows is not None:
                n = len(rows.y)
                x[k, :n], y[k, :n], heads[k, :n] = rows.x, rows.y, rows.heads
                if outputs is not None and rows.outputs is not None:
                    outputs[k, :n] = rows.outputs
        counts = torch.tensor([0 if rows is None else len(rows.y) for rows in drawn], device=y.device)
        return Rows(x, y, heads, outputs, counts)

    def store_stream(self, step: Step, outputs: bool = False) -> None:
        """Offer each member's batch of ``step`` to its reservoir (with the outputs, for DER++)."""
        for k, (buffer, generator) in enumerate(zip(self.buffers, self.generators)):
            x, y, out = (step.x, step.y, step.outputs) if not self.stacked else \
                (step.x[k], step.y[k], step.outputs[k])
            buffer.add_reservoir(x, y, step.head, generator, outputs=out if outputs else None)

    def store_task(self, view: TaskView) -> None:
        """After a task, each member keeps ``memory`` rows of each of its classes (its own draw)."""
        for buffer, generator in zip(self.buffers, self.generators):
            buffer.add_class_balanced(view.x, view.y, view.head, generator)

    def rows_loss(self, rows: Rows) -> torch.Tensor:
        """The mean cross-entropy of stored rows, each through its own task's head: a number, or
        one mean per member over its real rows (one trunk pass)."""
        total = None
        for _, logits, mine in self.head_outputs(trunk_features(self.model, rows.x, rows.counts), rows):
            losses = F.cross_entropy(logits.flatten(0, -2), torch.where(mine, rows.y, 0).flatten(),
                                     reduction="none").view(rows.y.shape)
            term = (losses * mine).sum(-1)
            total = term if total is None else total + term
        assert total is not None
        return total / rows.count()

    def outputs_of(self, rows: Rows) -> torch.Tensor:
        """Each stored row's outputs through its own task's head (heads of one size), in the rows'
        order (one trunk pass; a stack's padding rows are 0)."""
        out = None
        for _, logits, mine in self.head_outputs(trunk_features(self.model, rows.x, rows.counts), rows):
            out = torch.where(mine[..., None], logits, 0.0 if out is None else out)
        assert out is not None
        return out

    def stored_examples(self, member: int = 0) -> int:
        return len(self.buffers[member])

    def state_dict(self) -> dict[str, Any]:
        return {"buffers": per_member([buffer.state_dict() for buffer in self.buffers])}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["buffers"][PER_MEMBER] if "buffers" in state else [state["buffer"]]  # older: one buffer
        self._buffers = [Buffer(0) for _ in saved]
        for buffer, size, part in zip(self._buffers, self.member_values("memory"), saved):
            buffer.capacity = int(size)
            buffer.load_state_dict(part)

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


def choose(stored: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Which ``count`` of ``stored`` rows to draw (all of them where fewer): uniform without
    replacement, on the CPU (where the generator is)."""
    return torch.randperm(stored, generator=generator)[:count]


class Buffer:
    """Rows of (input, label as its head knows it, head, and optionally the outputs then)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # reservoir: in total; class-balanced: per class
        self.x: torch.Tensor | None = None
        self.y = torch.zeros(0, dtype=torch.long)
        self.heads = torch.zeros(0, dtype=torch.long)
        self.outputs: torch.Tensor | None = None
        self.seen = 0  # samples the reservoir has been offered
        self.version = 0  # counts changes to the rows: a stack's joined copy is rebuilt when it moves

    def __len__(self) -> int:
        return self.y.shape[0]

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
            self.version += 1
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
        """``count`` stored rows (``choose``), with the outputs stored with them."""
        assert self.x is not None
        chosen = choose(len(self), count, generator).to(self.y.device)
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
        self.version += 1

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "heads": self.heads, "outputs": self.outputs,
                "seen": torch.tensor(self.seen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.x, self.y, self.heads, self.outputs = state["x"], state["y"], state["heads"], state["outputs"]
        self.seen = int(state["seen"])
        self.version += 1



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
        self._joined: tuple[tuple[int, ...], Rows] | None = None  # the buffers' versions, their rows joined

    @property
    def buffers(self) -> list[Buffer]:
        """Each member's buffer (built at first use: a stack sets its members' options after ``__init__``)."""
        if self._buffers is None:
            self._buffers = [Buffer(int(size)) for size in self.member_values("memory")]
        return self._buffers

    def draw(self, count: int) -> Rows | None:
        """``count`` rows of each member's buffer (``choose``), drawn with its own
        generator; a stack's gathered at once from its buffers joined (member first, padded,
        rebuilt only when a buffer changed), padding rows zero (``Rows.counts``); None while
        every buffer is empty."""
        if not self.stacked:
            return self.buffers[0].draw(count, self.generators[0]) if len(self.buffers[0]) else None
        joined = self._joined_buffers()
        if joined is None:
            return None
        sizes = [len(buffer) for buffer in self.buffers]
        chosen = [choose(size, count, generator) if size else torch.zeros(0, dtype=torch.long)  # no draw, as alone
                  for size, generator in zip(sizes, self.generators)]
        slots = joined.y.shape[1]  # each member's last slot is a zero row: the padding draws it
        index = torch.nn.utils.rnn.pad_sequence(chosen, batch_first=True, padding_value=slots - 1)
        flat = (index + slots * torch.arange(len(chosen))[:, None]).flatten().to(joined.y.device)

        def gather(stored: torch.Tensor) -> torch.Tensor:
            return stored.flatten(0, 1).index_select(0, flat).view(*index.shape, *stored.shape[2:])

        return Rows(gather(joined.x), gather(joined.y), gather(joined.heads),
                    None if joined.outputs is None else gather(joined.outputs),
                    torch.tensor([min(size, count) for size in sizes], device=joined.y.device))

    def _joined_buffers(self) -> Rows | None:
        """Every member's buffer as one (K, largest + 1, ...) set of rows, zero-padded (at least
        one zero row each); None while all are empty."""
        versions = tuple(buffer.version for buffer in self.buffers)
        if self._joined is None or self._joined[0] != versions:
            present = [buffer for buffer in self.buffers if len(buffer)]
            if not present:
                return None
            like = present[0]
            assert like.x is not None
            width = max(len(buffer) for buffer in present) + 1

            def join(parts: list[torch.Tensor | None], empty: torch.Tensor) -> torch.Tensor:
                out = empty.new_zeros((len(parts), width, *empty.shape[1:]))
                for k, part in enumerate(parts):
                    if part is not None and len(part):
                        out[k, :len(part)] = part
                return out

            x = join([b.x for b in self.buffers], like.x)
            y = join([b.y for b in self.buffers], like.y)
            heads = join([b.heads for b in self.buffers], like.heads)
            outputs = None if like.outputs is None else join([b.outputs for b in self.buffers], like.outputs)
            self._joined = (versions, Rows(x, y, heads, outputs))
        return self._joined[1]

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
        self._buffers, self._joined = [Buffer(0) for _ in saved], None
        for buffer, size, part in zip(self._buffers, self.member_values("memory"), saved):
            buffer.capacity = int(size)
            buffer.load_state_dict(part)

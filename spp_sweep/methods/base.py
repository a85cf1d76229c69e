"""The hook protocol through which the engine knows a continual-learning method.

The engine calls, for each task t of the sequence::

    tasks_to_train(t, T)          which tasks' data to train on now (joint: all at once)
    trainable_parameters(t)       what the optimiser may change (SGD-F: heads only after task 0)
    before_task(view)             snapshot what the method needs (LwF's old model, SI's start)
    extra_rows(t, head, size)     stored samples to train on in the same mini-batch (replay)
    penalty(step)                 extra loss term added to every mini-batch's task loss
    before_update()               the gradients, after the backward pass and before the update
                                  (A-GEM projects them)
    after_step(lr)                after each optimiser step, with the step size it used
                                  (the implicit penalty step, then SI's path integral)
    observe(step)                 the step's batch as the network saw it before the update
                                  (replay stores samples, DER++ their outputs)
    after_task(view)              update state from the finished task (importances, anchors)

A method draws whatever it draws (a buffer's samples) from ``self.generator``, which the engine
seeds from the run's seed alone and keeps in its checkpoints, so two seeds draw differently and
a resumed run draws as the uninterrupted one. In a stack, ``self.generators`` holds each member's
(its separate run's), and a state that differs in shape between members (a buffer of each
member's own size) is kept under :func:`per_member`.

plus ``check_training`` (refuse optimiser settings a method's options cannot work with, before
any data is loaded) and ``state_dict``/``load_state_dict`` so a checkpoint taken between tasks continues
exactly. A method is one short file that overrides only the hooks it needs.

Stacked runs (spp_sweep/stacked.py) train K configurations as one batched model whose every
tensor has a leading member dimension. The same hooks serve them: a method writes its math
elementwise, reads a hyperparameter through :meth:`Method.option` (a number, or one value per
member), sums a per-parameter quantity with :meth:`Method.member_sum`, and returns a penalty
that is a scalar, or one value per member. ``stackable_options`` names the options whose values
may differ between members; every other option is the same for the whole stack. In a stack,
every tensor a method's ``state_dict`` holds has the member dimension first, or sits in a
:func:`per_member` list: a stack drops the members that ended by slicing those
(``StackedExperiment.repack``). Stored rows (:class:`Rows`) of a stack are padded to the widest
member's, ``counts`` saying how many are real; :meth:`Method.head_outputs` passes them through
their heads and records which members' rows reached each head (an optimiser steps a head only for
the members whose loss reached it, as a separate run's skips a head without a gradient).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from ..benchmarks.base import Inputs
from ..errors import ConfigError
from ..models import ContinualModel

if TYPE_CHECKING:
    from ..models.batched import StackedModel


@dataclass(frozen=True)
class Option:
    """A method hyperparameter: its default, meaning and valid range (checked before a run)."""

    default: Any
    help: str
    minimum: float | None = 0.0
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None

    def check(self, method: str, name: str, value: Any) -> Any:
        kind = type(self.default)
        try:
            value = _as_kind(kind, value)
        except (TypeError, ValueError, OverflowError):
            wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
            raise ConfigError(f"{method} option {name}={value!r} must be {wanted.get(kind, kind.__name__)}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{method} option {name}={value!r}; choose one of: {', '.join(self.choices)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{method} option {name}={value!r} must be a finite number")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.minimum is not None:
            if value != value or (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
                bound = f"> {self.minimum}" if self.exclusive_minimum else f">= {self.minimum}"
                raise ConfigError(f"{method} option {name}={value!r} must be {bound}")
        return value


def _as_kind(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` without guessing: a boolean is never a number (``lam=true``), a
    number never a boolean, and a whole number is not truncated from 2.7."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ValueError(value)
    if isinstance(value, bool):
        raise ValueError(value)
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()):
            return int(value)
        raise ValueError(value)
    if kind is float:
        if isinstance(value, (int, float, str)):
            return float(value)
        raise ValueError(value)
    if kind is str and not isinstance(value, str):
        raise ValueError(value)
    return kind(value)


def along_members(value: Any, like: torch.Tensor) -> Any:
    """A per-member value (a (K,) tensor) shaped (K, 1, ...) to broadcast against ``like``; a
    number is returned as it is (unstacked runs)."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value.to(device=like.device, dtype=like.dtype).view(-1, *[1] * (like.dim() - 1))
    return value


@dataclass(frozen=True)
class TaskView:
    """What a method sees of a task: its index, head, and training inputs/targets on device."""

    index: int
    head: int
    x: Inputs
    y: torch.Tensor


PER_MEMBER = "per_member"


def per_member(states: Sequence[Any]) -> dict[str, list[Any]]:
    """A stacked method's state of one entry per member (any shapes: each member's buffer): a
    stack that drops members keeps the entries of those it keeps (``StackedExperiment.repack``)."""
    return {PER_MEMBER: list(states)}


@dataclass(frozen=True)
class Rows:
    """Stored samples a method adds to a training mini-batch (``Method.extra_rows``) or draws for
    its own loss: inputs, labels as the heads know them, the head of each row (a replayed
    task-incremental sample goes through its own task's head) and, where stored with them, the
    network's outputs then (DER++). A stack's rows have the member dimension first, (K, R, ...),
    padded to the widest member's draw: ``counts`` (K,) says how many of each member's are real."""

    x: torch.Tensor
    y: torch.Tensor
    heads: torch.Tensor
    outputs: torch.Tensor | None = None
    counts: torch.Tensor | None = None

    def real(self) -> torch.Tensor:
        """Which rows are real (not a stack's padding), shaped like ``y``."""
        if self.counts is None:
            return torch.ones_like(self.y, dtype=torch.bool)
        return torch.arange(self.y.shape[-1], device=self.y.device) < self.counts.to(self.y.device)[:, None]

    def count(self) -> torch.Tensor:
        """The real rows: a number, or one per member (at least 1: a member that drew none divides 0 by 1)."""
        return self.real().sum(-1).clamp_min(1)


def trunk_features(model: ContinualModel, x: torch.Tensor, real_rows: torch.Tensor | None) -> torch.Tensor:
    """The trunk's features of ``x``; in a stack with padded rows, member k's first
    ``real_rows[k]`` rows are its real ones (its dropout masks are drawn for those alone)."""
    if real_rows is None:
        return model.trunk(x)
    stacked = cast("StackedModel", model)
    stacked.set_rows(real_rows.tolist())
    try:
        return model.trunk(x)
    finally:
        stacked.set_rows(None)


@dataclass(frozen=True)
class Step:
    """One mini-batch as the engine computed it: penalties reuse its features and outputs.

    ``task`` and ``head`` count from 0, as every index in the Python API does (the CLI's
    progress lines print them from 1). ``outputs`` is what the objective's forward pass
    produced (``objectives.Forward.outputs``): class logits, or the VAE's reconstruction.
    """

    task: int
    head: int
    x: torch.Tensor
    y: torch.Tensor
    features: torch.Tensor
    outputs: torch.Tensor


class Method:
    """Base class: plain training with no regulariser. Subclasses override hooks."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    # the output layout a run uses unless its `output` setting says otherwise (config.OUTPUTS)
    default_output: ClassVar[str] = "per_task"
    # True for a method trained on every task's data at once (joint): its own final accuracies are
    # the m_i of the paper's FWT (eq. 7), and the standard FWT ("before task i") means nothing for it
    learns_all_tasks_at_once: ClassVar[bool] = False
    options: ClassVar[dict[str, Option]] = {}
    # The objectives (spp_sweep/objectives.py) the method is defined for; None: every one.
    objectives: ClassVar[tuple[str, ...] | None] = None
    # Options whose values may differ between the members of a stacked run (stacked.py).
    stackable_options: ClassVar[tuple[str, ...]] = ()
    # Why the method cannot train stacked (None: it can, with every hook written elementwise).
    stack_refusal: ClassVar[str | None] = None
    # True for a method that keeps training examples (replay): recommend leaves it out where the
    # user forbids storing data (--no-replay)
    stores_examples: ClassVar[bool] = False

    def __init__(self, model: ContinualModel, **options: Any):
        self.model = model
        self.hparams = self.validate_options(options)
        # Set by the engine from the run's `save_importances`: when False, a method may skip
        # measuring an importance that nothing would use (a penalty switched off by lam = 0).
        self.record_importances = False
        # Stacked runs only (set by stacked.py): each stackable option's value per member.
        self.member_options: dict[str, list[float]] | None = None
        self._option_tensors: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}
        # what the method draws from, one per member (one for a single run): seeded by the engine
        # from each run's seed and checkpointed there
        self.generators = [torch.Generator()]
        # the heads that stored rows reached in the current step, per head the members whose rows did
        self.heads_reached: dict[int, torch.Tensor] = {}

    @property
    def generator(self) -> torch.Generator:
        """A single run's generator (a stack's members each have theirs in ``generators``)."""
        return self.generators[0]

    @property
    def stacked(self) -> bool:
        return self.member_options is not None

    def option(self, name: str, like: torch.Tensor | None = None) -> Any:
        """The option's value; in a stacked run, a stackable option is a tensor of the members'
        values shaped (K, 1, ...) to broadcast against ``like`` (a tensor with a member dimension)
        in its dtype, or (K,) in float64 without ``like``."""
        if self.member_options is None or name not in self.member_options:
            return self.hparams[name]
        key = (name, like.dtype if like is not None else torch.float64,
               like.device if like is not None else torch.device("cpu"))
        if key not in self._option_tensors:  # built once: no new tensor (or host-to-device copy) per step
            values = torch.tensor(self.member_options[name], dtype=torch.float64)
            self._option_tensors[key] = values if like is None else values.to(like.dtype).to(like.device)
        values = self._option_tensors[key]
        return values if like is None else along_members(values, like)

    def option_is_zero(self, name: str) -> bool:
        """Whether the option is 0 (in a stacked run: for every member)."""
        values = self.member_options.get(name) if self.member_options else None
        return all(v == 0 for v in values) if values is not None else self.hparams[name] == 0

    def member_values(self, name: str) -> list[Any]:
        """An option's value for each member (one value for a single run)."""
        if self.member_options is not None and name in self.member_options:
            return list(self.member_options[name])
        return [self.hparams[name]] * len(self.generators)

    def head_outputs(self, features: torch.Tensor, rows: Rows) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(head, its outputs for every row's ``features``, which real rows are that head's) for
        each head some real row belongs to; records the members that reached it (``heads_reached``)."""
        real = rows.real()
        for h in sorted(set(rows.heads[real].tolist())):
            mine = (rows.heads == h) & real
            reached = mine.any(-1)
            self.heads_reached[h] = reached | self.heads_reached[h] if h in self.heads_reached else reached
            yield h, self.model.heads[h](features), mine

    def member_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of a per-parameter tensor: a scalar, or one sum per member when stacked."""
        return tensor.flatten(1).sum(1) if self.stacked else tensor.sum()

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``options`` over the defaults; unknown names or bad values raise ConfigError."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            valid = ", ".join(cls.options) or "none"
            raise ConfigError(f"method {cls.name!r} has no option {', '.join(map(repr, unknown))}; "
                              f"valid options: {valid}")
        merged = {name: opt.default for name, opt in cls.options.items()}
        for name, value in options.items():
            merged[name] = cls.options[name].check(cls.name, name, value)
        return merged

    @classmethod
    def check_training(cls, hparams: Mapping[str, Any], *, momentum: float, optimizer: str = "sgd") -> None:
        """Raise ConfigError if validated options ``hparams`` cannot run with these optimiser settings."""

    @classmethod
    def check_objective(cls, hparams: Mapping[str, Any], objective: str, usable: Sequence[str]) -> None:
        """Raise ConfigError if the method (with options ``hparams``) is not defined for the
        benchmark's ``objective`` (objectives.py); ``usable`` names the methods that are."""
        if cls.objectives is not None and objective not in cls.objectives:
            raise ConfigError(f"method {cls.name!r} is defined for {', '.join(cls.objectives)} only, and the "
                              f"benchmark asks for the {objective} objective; use one of: {', '.join(usable)}")

    # -- hooks -------------------------------------------------------------------------
    def tasks_to_train(self, task: int, n_tasks: int) -> list[int]:
        return [task]

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def before_task(self, view: TaskView) -> None:
        pass

    def set_train_mode(self, task: int) -> None:
        """Put the model in its training mode for ``task`` (all of it in train mode by default;
        SGD-F keeps its frozen trunk's batch-norm statistics fixed)."""
        self.model.train()

    def extra_rows(self, task: int, head: int, size: int) -> Rows | None:
        """Samples to append to this step's mini-batch of ``task`` (``size`` rows; None: none). The engine runs
        the trunk once over the whole batch (batch norm sees them together) and minimises the
        mean loss over all its rows, each through its own head."""
        return None

    def penalty(self, step: Step) -> torch.Tensor | None:
        return None

    def before_update(self) -> None:
        """After the backward pass, before the optimiser's update: a method may change the
        gradients in ``p.grad`` (projection; in a stack, each member's slice by its own rule)."""

    def after_step(self, lr: float | torch.Tensor) -> None:
        """After each optimiser step; ``lr`` is the step size it used (the decayed learning rate;
        in a stacked run a (K,) tensor, one per member: see :func:`along_members`)."""

    def observe(self, step: Step) -> None:
        """After the update, the step's batch and what the network output for it before the
        update (a stack's with the member dimension first)."""

    def after_task(self, view: TaskView) -> None:
        pass

    def stored_examples(self, member: int = 0) -> int:
        """How many training examples the method keeps now (a replay buffer's rows), for the
        stack's ``member``-th member: data a user may not be allowed to keep. 0 for methods that keep none."""
        return 0

    def importances(self) -> dict[str, torch.Tensor] | None:
        """Per-parameter importance of the last finished task (None if the method has none)."""
        return None

    def task_importance(self, view: TaskView) -> list[torch.Tensor]:
        """One task's own importance of each shared parameter (order of ``named_shared_parameters``),
        for methods that measure one (EWC, MAS, SI, SPP); the parameter analysis probes models with
        SPP's (``save_parameters``)."""
        raise NotImplementedError(f"{self.name} measures no per-parameter importance")

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

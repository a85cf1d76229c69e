"""K configurations of one method trained as one batched model (issue 14: a λ grid at the cost of one trial).

A λ-robustness sweep is many small runs of the same shape. Trained alone, each uses a sliver
of the hardware (per-operation overhead on a CPU, idle SMs on a GPU). A stack trains K
*members* at once: every weight has a leading member dimension (models/batched.py), every
matmul is batched, and each member keeps its own learning rate, seed (initialisation, data
order, dropout masks) and stackable method options (``Method.stackable_options``: λ, SI's ξ).
Everything else (method, its other options, benchmark, model, epochs, batch size, momentum,
output layers) is shared; :func:`stack_key` says what must match.

Members are independent: no operation mixes the member dimension, each member's loss is its
own mean over its own batch, and the sum that is differentiated has a separate term per member,
so member k's gradient is the gradient of its separate run. Results agree with K separate runs
up to floating-point rounding (batched kernels sum in another order, see
tests/unit/test_stacked.py for the tolerance). A member whose loss turns NaN/inf, or that blows
up (the engine's finite blow-up rules), is recorded as diverged at that task and frozen: its
learning rate becomes 0 and its loss leaves the sum; the others go on. Before the next task the
members that ended (diverged, or stopped by early stopping) leave the batched model
(:meth:`StackedExperiment.repack`), so their compute is freed.

Both this and :class:`spp_sweep.engine.Experiment` are an ``engine.RunLoop`` (data views,
task preparation, schedule, blow-up rules) and keep one ``engine.RunRecord`` per configuration,
from which every report and result is computed. The loop is the engine's with a member
dimension: the same hooks, the same schedule of data (each member's generator draws exactly as
its separate run's), the same blow-up rules and per-task checkpoints. What cannot be stacked is refused with a reason
(:func:`stack_refusal`) and trains one configuration per trial.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from . import metrics
from .adam import member_adam_step
from .benchmarks import Benchmark
from .benchmarks.streaming import ImageFiles
from .config import RunConfig
from .engine import (
    RunLoop,
    RunRecord,
    RunResult,
    TaskReport,
    forward_with_rows,
    method_seed,
)
from .errors import ConfigError
from .methods import Method, Step, get_method
from .methods.base import PER_MEMBER, along_members
from .models import ContinualModel, build_model
from .models.batched import StackedModel, stack_models

# Settings that may differ between members, besides the method's stackable options.
MEMBER_SETTINGS = ("lr", "seed")
STACKABLE_MODELS = ("mlp", "vgg9", "resnet18", "vae")  # models/batched.py checks the built network's layers too


def stack_key(config: RunConfig) -> str:
    """What the members of one stack share: every resolved setting but the learning rate, the
    seed and the method's stackable options (configurations with equal keys stack)."""
    values = config.to_dict()
    for name in MEMBER_SETTINGS:
        values.pop(name)
    stackable = get_method(config.method).stackable_options
    values["method_options"] = {k: v for k, v in values["method_options"].items() if k not in stackable}
    return json.dumps(values, sort_keys=True, default=str)


def stack_refusal(config: RunConfig) -> str | None:
    """Why a (resolved) configuration cannot be trained stacked, or None."""
    method = get_method(config.method)
    if method.stack_refusal:
        return f"{config.method}: {method.stack_refusal}"
    if config.model not in STACKABLE_MODELS:
        return f"only the {', '.join(STACKABLE_MODELS)} models are stacked, and this run trains a {config.model}"
    if config.model != "mlp" and method.stores_examples:
        # members draw different numbers of stored rows (padded): batch norm would count the padding
        return f"{config.method} replays stored rows, which a stacked CNN (batch norm) cannot"
    if config.model != "mlp" and method.learns_all_tasks_at_once:
        # its steps mix several tasks' batches of different sizes (padded rows): batch norm would count the padding
        return f"{config.method} trains several tasks at once, which a stacked CNN (batch norm) cannot"
    return None


class StackedExperiment(RunLoop):
    """K configurations (:func:`stack_key`-compatible) on one benchmark, as one batched model."""

    model: StackedModel

    def __init__(self, configs: Sequence[RunConfig], benchmark: Benchmark | None = None, repack: bool = True):
        """``repack``: drop the members that ended from the model before each task (:meth:`repack`);
        False keeps them in it, frozen (the numbers are the same; bench/stacked_asha.py times both)."""
        resolved = [c.resolved() for c in configs]
        check_stack(resolved)
        super().__init__(resolved[0], benchmark)
        if any(isinstance(task.x_train, ImageFiles) for task in self.benchmark.tasks):
            raise ConfigError("stacking needs the tasks in memory; a benchmark streamed from image files trains "
                              "one configuration per trial (stack: off)")
        models, self.all_dropout_rngs = [], []
        for config in resolved:  # each member initialised exactly as its separate run (engine.Experiment)
            torch.manual_seed(config.seed)
            models.append(build_model(config.model, self.benchmark.input_shape, self.head_sizes, config.model_options))
            self.all_dropout_rngs.append(torch.Generator().set_state(torch.get_rng_state()))
        self.all_shuffles = [torch.Generator().manual_seed(c.seed) for c in resolved]
        self.all_method_rngs = [torch.Generator().manual_seed(method_seed(c.seed)) for c in resolved]
        self.configs = resolved
        self.repacks = repack
        self.in_model = list(range(len(resolved)))  # the members the model holds, by position in ``members``
        self._assemble(models)
        self.tasks_done = 0
        self.last_loss = math.nan
        initial = self.evaluate()
        initial_val = self.evaluate("val") if self.has_validation else [[] for _ in resolved]
        self._members = [RunRecord(c, self.method, self.benchmark, self.objective, initial[k], initial_val[k])
                         for k, c in enumerate(resolved)]

    def _assemble(self, models: Sequence[ContinualModel]) -> None:
        """The batched model of the members ``in_model`` (their networks ``models``), a fresh
        method on it, and those members' learning rates and generators."""
        configs = [self.configs[k] for k in self.in_model]
        self.dropout_rngs = [self.all_dropout_rngs[k] for k in self.in_model]
        self.shuffles = [self.all_shuffles[k] for k in self.in_model]
        self.lrs = [c.lr for c in configs]
        try:  # a layer that cannot stack is named before anything trains
            stacked = stack_models(models, self.dropout_rngs, len(self.benchmark.input_shape))
        except ConfigError as error:
            raise ConfigError(f"cannot stack {self.config.model}: {error}") from None
        self.model = stacked.to(self.device)
        self.model.head_is_shared = self.config.penalise_head
        method_cls = get_method(self.config.method)
        self.method = method_cls(self.model, **self.config.method_options)
        self.method.member_options = {name: [float(c.method_options[name]) for c in configs]
                                      for name in method_cls.stackable_options}
        self.method.record_importances = self.config.save_importances
        self.method.generators = [self.all_method_rngs[k] for k in self.in_model]
        for member in getattr(self, "_members", []):  # records read only the method's class; drop the old model
            member.method = self.method

    def _reassemble(self, in_model: list[int]) -> None:
        """Rebuild the model for the members ``in_model``; its tensors are the caller's to load.
        The networks are built only for their shapes: torch's generator is left as it was."""
        self.in_model = list(in_model)
        with torch.random.fork_rng(devices=[]):
            models = [build_model(self.config.model, self.benchmark.input_shape, self.head_sizes,
                                  self.config.model_options) for _ in in_model]
        self._assemble(models)

    def _start_task(self, task: int) -> None:
        if self.repacks:
            self.repack()

    def repack(self) -> bool:
        """Drop the members that ended (diverged, or stopped by early stopping: sweep/rungs.py)
        from the batched model, so their compute is freed; True if it did.

        A frozen member costs as much as a running one (its lr is 0, but its forward and backward
        passes still run). Every tensor of the model, of its per-task batch-norm statistics and of
        the method's state has the member dimension first (methods/base.py), so the survivors'
        state is those tensors' slices, loaded into a model of the survivors: the checkpoint
        contract (``state_dict`` between tasks continues exactly) makes this the same run. A
        state with a tensor that has no member dimension is not repacked (a warning says so)."""
        keep = [i for i, k in enumerate(self.in_model) if self._members[k].status == "running"]
        if not keep or len(keep) == len(self.in_model):
            return False
        index = torch.tensor(keep)
        try:
            model, method, norm_stats = (_members_of(part, index, self.size) for part in
                                         (self.model.state_dict(), self.method.state_dict(), self.model.norm_stats))
        except _NoMemberDimension as error:  # a method outside the protocol: its ended members stay, frozen
            print(f"spp-sweep: ended members stay in the stack ({error})", file=sys.stderr)
            self.repacks = False
            return False
        self._reassemble([self.in_model[i] for i in keep])
        self.model.load_state_dict(model)
        self.method.load_state_dict(method)
        self.model.norm_stats = norm_stats
        return True

    @property
    def members(self) -> list[RunRecord]:
        return self._members

    @property
    def trained(self) -> list[RunRecord]:
        return [self._members[k] for k in self.in_model]

    @property
    def size(self) -> int:
        return len(self.lrs)

    @property
    def next_task(self) -> int:
        return self.tasks_done

    # -- the loop (engine.RunLoop._run_tasks) ------------------------------------------
    def run(self, on_task_end: Callable[[int, StackedExperiment], None] | None = None,
            progress: bool = False) -> list[RunResult]:
        """Train the remaining tasks; ``on_task_end(task, stack)`` runs after each (reports, checkpoint)."""
        return self.run_tasks(None if on_task_end is None else (lambda task: on_task_end(task, self)), progress)

    def _task_done(self, task: int) -> None:
        self.tasks_done = task + 1


    def _member_slice(self, tensor: torch.Tensor, k: int) -> torch.Tensor:
        return tensor[k]

    def _progress_line(self, task: int, seconds: float) -> str:
        alive = [m for m in self.members if m.status == "running"]
        best = max((metrics.running_accuracy(m.rows[task], task) for m in alive), default=math.nan)
        return (f"{self.config.method} stack of {len(self.members)}: task {task + 1}/{self.benchmark.n_tasks} done in "
                f"{seconds:.2f} s, {len(alive)} members running, best ACC on tasks seen {best:.4f}")

    def _stepper(self, trainable: set[torch.nn.Parameter]) -> _MemberSteps:
        return _MemberSteps(self, trainable)

    def _member_batches(self, tasks: list[int]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor,
                                                                  list[int] | None]]:
        """(each member's task, x (K, B, ...), y (K, B), real rows per member or None) per step;
        each member's order drawn from its own generator exactly as its separate run draws it."""
        if len(tasks) == 1:  # one task: every member's batches have the same sizes; one gather per step
            t = tasks[0]
            n = len(self._targets[t][0])
            orders = torch.stack([self._order(n, g) for g in self.shuffles]).to(self.device)
            for index in self._split_batches(orders, dim=1):
                yield [t] * self.size, self.benchmark.tasks[t].x_train[index], self._targets[t][0][index], None
            return
        schedules = [self._schedule(tasks, g) for g in self.shuffles]  # several tasks at once (joint)
        for step in zip(*schedules):
            member_tasks = [t for t, _ in step]
            rows = [len(index) for _, index in step]
            width = max(rows)
            first_x = self.benchmark.tasks[member_tasks[0]].x_train
            x = first_x.new_zeros((self.size, width, *first_x.shape[1:]))
            y = torch.zeros((self.size, width), dtype=torch.long, device=self.device)
            for k, (t, index) in enumerate(step):  # padded; rows past a member's batch carry no weight
                x[k, :len(index)] = self.benchmark.tasks[t].x_train[index]
                y[k, :len(index)] = self._targets[t][0][index]
            yield member_tasks, x, y, (None if len(set(rows)) == 1 else rows)

    def _member_step(self, params: list[torch.nn.Parameter], velocity: list[torch.Tensor | None], lr: torch.Tensor,
                     lr_on_device: torch.Tensor, mask: torch.Tensor, tasks: list[int], x: torch.Tensor,
                     y: torch.Tensor, rows: list[int] | None,
                     count: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One optimiser step of every member (the engine's step: stored rows, penalty, projection,
        observation); returns per member (loss with any penalty, the
        cross-entropy alone, each member's the mean over its own batch; its batch's correct
        predictions, None where members train on several heads at once)."""
        heads = [self.head_of(t) for t in tasks]
        penalty = step = None
        used: dict[torch.nn.Parameter, torch.Tensor] = {}  # per head: which members' batches used it
        right = None
        self.method.heads_reached.clear()
        if len(set(heads)) == 1 and rows is None:  # the engine's step (Experiment._step), per member
            stored = self.method.extra_rows(tasks[0], heads[0], y.shape[1]) if len(set(tasks)) == 1 else None
            if stored is None:
                forward = self.objective.training_forward(self.model, heads[0], x, y)
                total = forward.loss
            else:
                forward, total = forward_with_rows(self.objective, self.method, heads[0], x, y, stored)
            features, logits, objective = forward.features, forward.outputs, forward.loss
            right = self.objective.correct(logits.detach(), y) if count else None
            if len(set(tasks)) == 1:
                step = Step(tasks[0], heads[0], x, y, features, logits)
                penalty = self.method.penalty(step)
        else:  # members on different tasks (joint): each member's loss from its own head, real rows only
            self.model.set_rows(rows)
            features = self.model.trunk(x)
            self.model.set_rows(None)
            if type(self.method).penalty is not Method.penalty:
                raise ConfigError(f"{self.config.method} trains several tasks at once and has a penalty; "
                                  "it cannot be stacked (stack: off)")
            counts = torch.tensor(rows or [y.shape[1]] * self.size, device=self.device)
            weights = (torch.arange(y.shape[1], device=self.device) < counts[:, None]) / counts[:, None]
            head_of_member = torch.tensor(heads, device=self.device)
            objective = torch.zeros(self.size, device=self.device)
            for head in sorted(set(heads)):
                on_head = (head_of_member == head)[:, None]
                for p in self.model.heads[head].parameters():
                    used[p] = on_head[:, 0]
                logits = self.model.heads[head](features)
                per_sample = self.objective.sample_losses(logits, torch.where(on_head, y, 0))
                objective = objective + (per_sample * weights * on_head).sum(1)
            total = objective
        loss = total if penalty is None else total + penalty
        for p in params:
            p.grad = None
        torch.where(mask, loss, torch.zeros_like(loss)).sum().backward()  # one term per member
        self.method.before_update()
        for head, reached in self.method.heads_reached.items():  # stored rows of another task's head
            if head != heads[0]:
                for p in self.model.heads[head].parameters():
                    used[p] = reached
        self._sgd(params, velocity, lr_on_device, used, lr)
        self.method.after_step(lr)
        if step is not None:
            self.method.observe(step)
        return loss.detach(), objective.detach(), right

    @torch.no_grad()
    def _sgd(self, params: list[torch.nn.Parameter], velocity: list[Any], lr: torch.Tensor,
             used: dict[torch.nn.Parameter, torch.Tensor], lr_on_host: torch.Tensor) -> None:
        """torch.optim.SGD's step for every member: p -= lr_k * g (with momentum, lr_k * buffer);
        with optimizer=adam, Adam's (adam.member_adam_step, ``velocity`` holding its moments).

        A separate run's optimiser skips a head its batch did not reach (no gradient: its momentum
        buffer neither decays nor moves it); ``used`` marks, per head, the members whose batch
        reached it, and only those members' slices step."""
        if self.config.optimizer == "adam":
            rates = lr_on_host.tolist()  # Python floats, as a separate run's Adam computes its step size
            for i, p in enumerate(params):
                if p.grad is not None:
                    if velocity[i] is None:
                        velocity[i] = {}
                    member_adam_step(p, p.grad, velocity[i], rates, used.get(p))
            return
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            step = p.grad
            reached = used.get(p)
            if self.config.momentum:  # the momentum buffer, started at a member's first gradient
                if velocity[i] is None:
                    velocity[i] = (torch.zeros_like(p), torch.zeros(self.size, dtype=torch.bool, device=p.device))
                buffer, started = velocity[i]
                reach = reached if reached is not None else torch.ones_like(started)
                moved = torch.where(along_members(started, p).bool(), buffer * self.config.momentum + step, step)
                buffer.copy_(torch.where(along_members(reach, p).bool(), moved, buffer))
                started |= reach
                step = buffer
            rate = along_members(lr, p)
            if reached is not None:
                rate = rate * along_members(reached, p)
            p.addcmul_(rate, step, value=-1.0)

    def evaluate(self, split: str = "test") -> list[list[float]]:
        """Per member, the objective's score on every task's ``split`` (engine.RunLoop._scores)."""
        return self._scores(split)

    def report(self, task: int) -> list[TaskReport | None]:
        """Each member's report after ``task`` (None for a member that diverged before it)."""
        return [m.report(task) if len(m.rows) > task else None for m in self.members]

    # -- checkpoints (engine.RunLoop.state_dict: model, method, time, statistics) ---------
    def _own_state(self) -> dict[str, Any]:
        return {
            "stacked": True,
            "configs": [m.config.to_dict() for m in self.members],
            "members": [m.saved() for m in self.members],
            "tasks_done": self.tasks_done,
            "shuffles": [g.get_state() for g in self.all_shuffles],
            "dropout_rngs": [g.get_state() for g in self.all_dropout_rngs],
            "method_rngs": [g.get_state() for g in self.all_method_rngs],
            "in_model": list(self.in_model),  # the model's tensors hold these members only (repack)
        }

    def _load_own(self, state: Mapping[str, Any]) -> None:
        if [m.config.to_dict() for m in self.members] != state["configs"]:
            raise ValueError("the checkpoint is of another stack of configurations")
        for member, record in zip(self.members, state["members"]):
            record = dict(record)
            if "diverged_at" in record:  # checkpoints written before the index counted from 0
                old = record.pop("diverged_at")
                record["diverged_task"] = None if old is None else old - 1
            member.load(record)
        self.tasks_done = int(state["tasks_done"])
        for generator, saved in zip(self.all_shuffles, state["shuffles"]):
            generator.set_state(saved)
        for generator, saved in zip(self.all_dropout_rngs, state["dropout_rngs"]):
            generator.set_state(saved)
        for generator, saved in zip(self.all_method_rngs, state.get("method_rngs", [])):  # older: none drew
            generator.set_state(saved)
        in_model = [int(k) for k in state.get("in_model", range(len(self.members)))]
        if in_model != self.in_model:  # saved after a repack: the engine loads the tensors into this model
            self._reassemble(in_model)


class _NoMemberDimension(ValueError):
    """A stack's state holds a tensor without the member dimension first."""


def _members_of(value: Any, index: torch.Tensor, size: int) -> Any:
    """``value`` (a state: tensors in dicts, lists, tuples) with every tensor's leading member
    dimension cut to the members at ``index``; other values unchanged."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.shape[0] != size:
            raise _NoMemberDimension(f"a state tensor of shape {tuple(value.shape)} in a stack of {size}")
        return value[index.to(value.device)]  # a copy (advanced indexing)
    if isinstance(value, Mapping) and set(value) == {PER_MEMBER}:  # one entry per member (methods/base.per_member)
        return {PER_MEMBER: [value[PER_MEMBER][i] for i in index.tolist()]}
    if isinstance(value, Mapping):
        return {key: _members_of(v, index, size) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_members_of(v, index, size) for v in value)
    return value


class _MemberSteps:
    """A stack's steps (engine.Stepper): each member's own learning rate, decayed per epoch and 0
    once it stopped (frozen: its loss also leaves the sum), SGD with momentum per member
    (``StackedExperiment._sgd``), and each member's batches in its separate run's order."""

    def __init__(self, stack: StackedExperiment, trainable: set[torch.nn.Parameter]) -> None:
        self.stack = stack
        self.params = [p for p in stack.model.parameters() if p in trainable]
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)
        self.lr = torch.zeros(stack.size, dtype=torch.float64)
        self.lr_on_device, self.mask = self.lr.to(stack.device), torch.ones(stack.size, dtype=torch.bool)

    def start_epoch(self, epoch: int, alive: list[bool]) -> None:
        decay = self.stack.config.lr_decay**epoch  # section 4.1's decayed lr, per member
        self.lr = torch.tensor([lr * decay if a else 0.0 for lr, a in zip(self.stack.lrs, alive)], dtype=torch.float64)
        self.lr_on_device = self.lr.to(self.stack.device)
        self.mask = torch.tensor(alive, device=self.stack.device)

    def batches(self, tasks: list[int]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, list[int] | None]]:
        return self.stack._member_batches(tasks)

    def step(self, batch: tuple[list[int], torch.Tensor, torch.Tensor, list[int] | None],
             count: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        tasks, x, y, rows = batch
        loss, objective_loss, right = self.stack._member_step(self.params, self.velocity, self.lr, self.lr_on_device,
                                                              self.mask, tasks, x, y, rows, count=count)
        return loss, objective_loss, right, y.shape[1]


def check_stack(configs: Sequence[RunConfig]) -> None:
    """Raise ConfigError unless the resolved ``configs`` can train as one stack."""
    if not configs:
        raise ConfigError("a stack needs at least one configuration")
    refusal = stack_refusal(configs[0])
    if refusal:
        raise ConfigError(f"cannot stack: {refusal}")
    key = stack_key(configs[0])
    for config in configs[1:]:
        if stack_key(config) != key:
            first, other = json.loads(key), json.loads(stack_key(config))
            differing = sorted(k for k in first if first[k] != other.get(k))
            raise ConfigError(f"configurations in one stack may differ only in lr, seed and "
                              f"{config.method}'s stackable options; these differ: {', '.join(differing)}")


def run_stacked(configs: Sequence[RunConfig], **kwargs: Any) -> list[RunResult]:
    """Build and run one stack (scripts and tests)."""
    progress = kwargs.pop("progress", False)
    return StackedExperiment(configs, **kwargs).run(progress=progress)

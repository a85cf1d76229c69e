"""The sequential-task loop: train task t, let the method update, evaluate every task.

The engine knows methods only through the hooks of :mod:`spp_sweep.methods.base` and
benchmarks only as tensors. Data live on the run's device; mini-batches are index gathers
(no DataLoader). After every task the caller's callback gets the new accuracy row and may
take a checkpoint (:meth:`Experiment.state_dict`); :meth:`Experiment.load_state_dict`
continues from it and produces exactly the numbers of an uninterrupted run on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from . import metrics
from .adam import Adam
from .benchmarks import Benchmark, build_benchmark
from .benchmarks.base import Inputs, with_validation
from .benchmarks.streaming import ImageFiles, batch_loader
from .config import ResolvedRunConfig, RunConfig
from .errors import ConfigError
from .methods import Method, Step, TaskView, get_method
from .methods.base import Rows, trunk_features
from .models import ContinualModel, build_model
from .objectives import Forward, Objective, get_objective
from .sgd import SGD


@dataclass
class TaskReport:
    """What the caller learns after each finished task (and what Ray Tune reports).

    ``task`` is the index of the task just finished, from 0 (the CLI prints ``task + 1``).
    """

    task: int
    n_tasks: int
    accuracy_row: list[float]
    accuracy_matrix: list[list[float]]
    running_acc: float
    seconds: float
    validation_matrix: list[list[float]] | None = None  # rows on the validation split, when held out


@dataclass
class RunResult:
    """A finished (or diverged) run: the accuracy matrix and its metrics."""

    config: dict[str, Any]
    accuracy_matrix: list[list[float]]
    initial_accuracy: list[float]
    metrics: dict[str, float]
    status: str  # "finished", "diverged" or "stopped" (early, by a scheduler: sweep/rungs.py)
    seconds: float
    task_names: list[str]
    diverged_task: int | None = None  # index (from 0) of the task whose training diverged; files print it from 1
    diverged_reason: str | None = None  # loss not finite, a finite blow-up (_blown_up) or a collapse (_collapsed)
    importances: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)
    # What the matrix holds (objectives.py): accuracy (higher is better) or, for a VAE, the
    # negative ELBO per image (lower is better); ACC/BWT/FWT are computed on it either way.
    score_name: str = "accuracy"
    higher_is_better: bool = True
    # per task, the objective's pictures (a VAE's reconstructions and samples, for Figure 5)
    pictures: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)
    # save_parameters: the shared parameters after each task, and the probe's importance of them
    parameters: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)
    probe_importances: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)
    # The same on the validation split (RunConfig.validation > 0), which sweeps select on.
    validation_matrix: list[list[float]] | None = None
    initial_validation_accuracy: list[float] | None = None
    validation_metrics: dict[str, float] | None = None
    # How many configurations trained together as one batched model (stacked.py); 1: alone.
    # ``seconds`` is then this member's share of the stack's time.
    stack_members: int = 1
    # examples the method keeps at the end (a replay buffer's rows; 0 for the others): what the
    # run asks to store of the data, reported beside its accuracy (recommend's ranking)
    stored_examples: int = 0

    def to_json(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        return {
            "config": self.config,
            "status": self.status,
            # the file format counts tasks from 1, as the CLI prints them (docs/reference/files.md)
            "diverged_at_task": None if self.diverged_task is None else self.diverged_task + 1,
            "diverged_reason": self.diverged_reason,
            "task_names": self.task_names,
            "accuracy_matrix": self.accuracy_matrix,
            "initial_accuracy": self.initial_accuracy,
            "metrics": {k: clean(v) for k, v in self.metrics.items()},
            "seconds": self.seconds,
            "score": {"name": self.score_name, "higher_is_better": self.higher_is_better},
            **({"stack_members": self.stack_members} if self.stack_members > 1 else {}),
            **({"stored_examples": self.stored_examples} if self.stored_examples else {}),
            **({} if self.validation_matrix is None else {
                "validation_matrix": self.validation_matrix,
                "initial_validation_accuracy": self.initial_validation_accuracy,
                "validation_metrics": {k: clean(v) for k, v in (self.validation_metrics or {}).items()},
            }),
        }


def first_tasks(benchmark: Benchmark, count: int) -> Benchmark:
    """The stream cut to its first ``count`` tasks (0: whole), before any data is split or moved."""
    if count == 0:
        return benchmark
    if count > benchmark.n_tasks:
        raise ConfigError(f"first_tasks={count} but {benchmark.name} has {benchmark.n_tasks} tasks; "
                          f"choose at most {benchmark.n_tasks}")
    return dataclasses.replace(benchmark, tasks=benchmark.tasks[:count])


def method_seed(seed: int) -> int:
    """The seed of a method's own generator (``Method.generator``): the run's seed moved past every
    seed a study may use (below 2^32), so its draws never repeat the data order's stream."""
    return seed + 2**32


def select_device(name: str) -> torch.device:
    """The run's device; asking for CUDA where there is none is a user error, not a crash."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but this machine has no CUDA GPU; use --device cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist (this machine has {torch.cuda.device_count()} GPUs)")
    return device


# A finite blow-up (see _blown_up): the task's loss ends this many times above its first batch's...
BLOWUP_FACTOR = 1.25
# ...or peaks above this many times it at some step (the loss exploded, then a dead network
# settled at chance, where its loss is that of its first batch again)...
PEAK_FACTOR = 10.0
# ...and ends no better than this fraction of the loss of uniform guessing, log(number of outputs).
CHANCE_FRACTION = 0.9
# ...and its training batches, in the last epoch, are classified no better than this above chance (1/C)
ACCURACY_MARGIN = 0.1
# A collapse (see _collapsed) loses tasks the network had learned: at least this share of the
# way from chance to perfect accuracy (0.9 on a 2-way head), not a slow learner's first gains...
LEARNED_SHARE = 0.8
# ...and leaves every task at most this share of that way (0.6 on a 2-way head, 0.28 on a 10-way one)
CHANCE_SHARE = 0.2
# The rise is judged only where the last epoch has this many batches (fewer: too noisy to call;
# a peak and NaN/inf still count): a 6-image test task's two batches can differ by 60% with
# nothing wrong, but not by a factor of ten on top of ending at chance.
MIN_JUDGED_BATCHES = 8
# The importance measured beside saved parameters (save_parameters), for every method alike.
PROBE_METHOD = "spp"


class Stepper(Protocol):
    """What differs between training one model and a stack inside :meth:`RunLoop.train_task`:
    the learning rate of an epoch, the mini-batches, and one update. Values are per member: (K,)
    tensors, K = 1 for one model."""

    def start_epoch(self, epoch: int, alive: list[bool]) -> None:
        """Set the epoch's decayed learning rate (section 4.1); 0 for a member that stopped."""

    def batches(self, tasks: list[int]) -> Iterator[Any]:
        """The epoch's mini-batches of ``tasks``, in each member's own order."""
        ...

    def step(self, batch: Any, count: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """One update: per member the loss with any penalty, the objective's loss alone, and with
        ``count`` the batch's correct predictions (None where the objective has no accuracy or
        members train several heads at once), and the batch's rows per member."""
        ...


class RunLoop:
    """What every run of the sequential-task loop shares, one configuration (:class:`Experiment`)
    or a stack of them (stacked.StackedExperiment): the settings, the device, the tasks on it with
    the validation split held out, the objective and output layers, the data views, the method's
    task preparation, the mini-batch schedule and the divergence rules, the loop over tasks
    (``_run_tasks``), the epochs of a task (``train_task``) and the evaluation (``_scores``).
    Each subclass owns its records, its :class:`Stepper` and its checkpoints."""

    config: ResolvedRunConfig
    method: Method
    model: ContinualModel

    def __init__(self, config: ResolvedRunConfig, benchmark: Benchmark | None) -> None:
        """The run's settings, device and threads, and its tasks on that device (with the
        validation split held out), objective and output layers."""
        self.config = config
        self.device = select_device(config.device)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        benchmark = first_tasks(benchmark or build_benchmark(config.benchmark, config.benchmark_options),
                                config.first_tasks)
        if config.validation > 0:
            benchmark = with_validation(benchmark, config.validation, config.validation_seed)
        self.benchmark = benchmark.to(self.device)
        self.objective = get_objective(self.benchmark.objective)
        self.head_sizes = self._head_sizes()
        self._targets = [self._task_targets(i) for i in range(self.benchmark.n_tasks)]
        self.seconds = 0.0  # the run's own time in training and scoring (a stack's, shared by its members)

    @property
    def next_task(self) -> int:
        """The first task not trained yet: 0 for a fresh run, more after a checkpoint is loaded."""
        raise NotImplementedError

    # -- the loop, for one configuration or a stack ----------------------------------------
    @property
    def members(self) -> list[RunRecord]:
        """One record per configuration: one for an :class:`Experiment`, K for a stack."""
        raise NotImplementedError

    @property
    def trained(self) -> list[RunRecord]:
        """The records of the configurations the model trains now, in the order of its member
        dimension: every member, until a stack drops those that ended (StackedExperiment.repack)."""
        return self.members

    def train_task(self, task: int, bar=None) -> bool:
        """Train every running member on task ``task`` (or what the method asks for), marking
        those that diverge (NaN/inf, or the finite blow-up rules); False when none is left
        running. One loop for one model and for a stack: what differs is the :class:`Stepper`
        (``_stepper``): an optimiser step of one model, or each member's own step of a stack."""
        prepared = self._prepare_task(task, bar)
        if prepared is None:
            return True
        train_on, trainable = prepared
        steps = self._stepper(trainable)
        self.method.set_train_mode(task)
        alive = [member.status == "running" for member in self.trained]
        size = len(alive)
        first = None  # the objective's loss on the task's first batch, per member: the untrained loss
        peak = torch.zeros(size, device=self.device)  # each member's highest batch loss (on device: no sync per step)
        task_loss = torch.zeros(size, device=self.device)
        correct, seen, n_batches = torch.zeros(size, device=self.device), 0, 0
        for epoch in range(self.config.epochs):
            steps.start_epoch(epoch, alive)
            running = torch.zeros(size, device=self.device)
            task_loss = torch.zeros(size, device=self.device)
            correct, seen, n_batches = torch.zeros(size, device=self.device), 0, 0  # the last epoch's accuracy
            last_epoch = epoch == self.config.epochs - 1  # the blow-up rule reads the last epoch's accuracy
            for batch in steps.batches(train_on):
                loss, objective_loss, right, rows = steps.step(batch, count=last_epoch)
                running += loss
                task_loss += objective_loss
                if right is not None:
                    correct += right
                    seen += rows
                peak = torch.maximum(peak, objective_loss)
                first = objective_loss if first is None else first
                n_batches += 1
            last = (running / max(1, n_batches)).tolist()  # one device sync per epoch, not per step
            for k, member in enumerate(self.trained):
                if alive[k] and not math.isfinite(last[k]):
                    member.diverge(task, "training loss not finite (NaN/inf)")
                    alive[k] = False
            finite = [v for v, a in zip(last, alive) if a]
            self.last_loss = sum(finite) / len(finite) if finite else math.nan
            if bar is not None:
                bar.update(1)
                bar.set_postfix(task=task + 1, loss=f"{self.last_loss:.3g}",  # mean over the epoch's batches
                                **({"running": sum(alive)} if size > 1 else {}))
            if not any(alive):
                break
        for p in self.model.parameters():
            p.requires_grad_(True)
        if first is not None:
            firsts, ends, peaks = first.tolist(), (task_loss / max(1, n_batches)).tolist(), peak.tolist()
            accuracies = (correct / seen).tolist() if seen else [None] * size
            for k, member in enumerate(self.trained):
                if alive[k]:
                    reason = self._blown_up(firsts[k], ends[k], peaks[k], task,
                                            rise_judged=n_batches >= MIN_JUDGED_BATCHES, accuracy=accuracies[k])
                    if reason is not None:
                        member.diverge(task, reason)
                        alive[k] = False
        if any(alive):  # a stack's diverged members' importances are computed too, and never read
            for t in train_on:
                self.method.after_task(self.view(t))
        self.model.remember_norm_stats(task)  # BN statistics per task (models/cnn.py); no-op without BN
        return any(alive)

    def _stepper(self, trainable: set[torch.nn.Parameter]) -> Stepper:
        """The task's :class:`Stepper` over the parameters the method lets train now."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        """Members trained at once: 1 for an :class:`Experiment`, K for a stack."""
        return 1

    # -- checkpoints, for one model or a stack ----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last finished task: the model (its batch-norm
        statistics per task too), the method's state, the run's time, and what the subclass
        keeps of its records and generators (``_own_state``). The optimiser is rebuilt at each
        task's start (plain SGD, the lr schedule restarting per task), so between tasks it holds
        no state worth saving. Tensors and plain values only (sweep/trainable loads them with
        ``weights_only``)."""
        return {**self._own_state(), "seconds": self.seconds, "model": self.model.state_dict(),
                "method": self.method.state_dict(),
                "norm_stats": {task: dict(stats) for task, stats in self.model.norm_stats.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_own(state)
        self.seconds = float(state["seconds"])
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.model.norm_stats = {int(k): dict(v) for k, v in state.get("norm_stats", {}).items()}

    def _own_state(self) -> dict[str, Any]:
        """The subclass's part of a checkpoint: its records, configuration and generators."""
        raise NotImplementedError

    def _load_own(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _scores(self, split: str = "test") -> list[list[float]]:
        """Per member, the objective's score on every task's ``split`` (test or val), also on
        tasks not trained yet (for the standard FWT), through ``Objective.score_sum`` with each
        task's own batch-norm statistics; one device sync for the whole evaluation. Sums are
        kept in float64 (accuracy counts stay exact) and divided by the task's size."""
        was_training = self.model.training
        self.model.eval()
        scores = []
        for index in range(self.benchmark.n_tasks):
            inputs, targets = self._split(index, split)
            total = torch.zeros(self.size, dtype=torch.float64, device=self.device)
            with self.model.norm_stats_of(index):
                for start in range(0, len(targets), self.config.eval_batch_size):
                    stop = start + self.config.eval_batch_size
                    total += self.objective.score_sum(self.model, self.head_of(index), inputs[start:stop],
                                                      targets[start:stop])  # (K,) sums, or one number
            scores.append(total / max(1, len(targets)))
        self.model.train(was_training)
        return torch.stack(scores, 1).tolist()

    def _member_slice(self, tensor: torch.Tensor, k: int) -> torch.Tensor:
        """Member ``k``'s part of a parameter-shaped tensor (a stack's leading member dimension)."""
        return tensor

    def _progress_line(self, task: int, seconds: float) -> str:
        raise NotImplementedError

    def run_tasks(self, on_task_end: Callable[[int], None] | None = None, progress: bool = False) -> list[RunResult]:
        """Train the remaining tasks, calling ``on_task_end(task)`` after each (reports,
        checkpoints); every member's result (one for an :class:`Experiment`)."""
        self._run_tasks(on_task_end, progress)
        return self.results()

    def results(self) -> list[RunResult]:
        """Each member's result, in order."""
        return [member.result(len(self.members)) for member in self.members]

    def _start_task(self, task: int) -> None:
        """Before ``task`` trains (a stack drops the members that ended: StackedExperiment.repack)."""

    def _task_done(self, task: int) -> None:
        """After ``task`` was trained and recorded, before ``on_task_end`` (a stack counts it)."""

    def _run_tasks(self, on_task_end: Callable[[int], None] | None, progress: bool) -> None:
        """Train the remaining tasks; after each, every running member's rows and saved arrays,
        its share of the time, and ``on_task_end(task)`` (reports, checkpoint). Members that
        diverged keep what they had; the loop ends when none is left running."""
        bar = _progress_bar(self, progress)
        try:
            for task in range(self.next_task, self.benchmark.n_tasks):
                if not any(m.status == "running" for m in self.members):
                    break
                start = time.perf_counter()
                self._start_task(task)
                trained = self.trained
                self.train_task(task, bar)
                alive = any(m.status == "running" for m in self.members)
                if alive:
                    self._record_task(task)
                elapsed = time.perf_counter() - start
                self.seconds += elapsed
                for member in trained:  # each member's share of the run's time (a frozen member's is lost)
                    if member.status == "running" or member.diverged_task == task:
                        member.seconds += elapsed / len(trained)
                if not alive:
                    break
                if progress and bar is None:  # not a terminal (a log, a pipe): one line per task
                    print(self._progress_line(task, elapsed), file=sys.stderr, flush=True)
                self._task_done(task)
                if on_task_end is not None:
                    on_task_end(task)
            for member in self.members:
                if member.status == "running":
                    member.status = "finished"
                    collapse = self._collapsed(member.val_rows)
                    if collapse is not None:  # diverged there: it keeps the rows before, like a blow-up
                        member.keep_tasks(collapse[0])
                        member.diverge(*collapse)
        finally:
            if bar is not None:
                bar.close()

    def _record_task(self, task: int) -> None:
        """Append what each running member keeps after ``task``: its scores on the test (and
        validation) split, and where asked, the method's importances, the shared parameters with
        the probe's importance of them, and the objective's pictures."""
        rows = self._scores()
        val_rows = self._scores("val") if self.has_validation else None
        importances = self.method.importances() if self.config.save_importances else None
        snapshot = self._snapshots(task) if self.config.save_parameters else None
        pictures = self.objective.pictures(self.model, self.benchmark.tasks)
        for k, member in enumerate(self.trained):
            if member.status != "running":
                continue
            member.rows.append(rows[k])
            member.stored_examples = self.method.stored_examples(k)
            if val_rows is not None:
                member.val_rows.append(val_rows[k])
            if importances is not None:
                member.importances.append({n: self._member_slice(v, k).detach().cpu().clone()
                                           for n, v in importances.items()})
            if snapshot is not None:
                member.parameters.append(snapshot[0][k])
                member.probe_importances.append(snapshot[1][k])
            if pictures is not None:  # a generator's (objectives.py); a stack's have the member dimension first
                member.pictures.append({n: self._member_slice(v, k).detach().cpu() for n, v in pictures.items()})

    def _snapshots(self, task: int) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
        """Per member, the shared parameters after ``task`` and SPP's importance of them on that task.

        The probe is SPP's measure (eqs. 2-3), label-free, so it applies to any method's model
        (fine-tuning and SGD have no importance of their own, yet section 4.2.5 compares their
        importance distributions). It only reads the model: no parameter, RNG or state changes.
        """
        named = list(self.model.named_shared_parameters())
        omega = get_method(PROBE_METHOD)(self.model).task_importance(self.view(task))
        size = len(self.trained)
        parameters = [{n: self._member_slice(p, k).detach().cpu().clone() for n, p in named} for k in range(size)]
        probes = [{n: self._member_slice(o, k).detach().cpu().clone() for (n, _), o in zip(named, omega)}
                  for k in range(size)]
        return parameters, probes


    @property
    def has_validation(self) -> bool:
        return self.config.validation > 0

    # -- data views ----------------------------------------------------------------------
    def head_of(self, task: int) -> int:
        return task if self.config.output == "per_task" else 0

    def _head_sizes(self) -> list[int]:
        """The output layers of ``config.output``: one per task, one of the task's size, or one
        over every class."""
        tasks = self.benchmark.tasks
        if self.config.output == "class_incremental":
            return [self.benchmark.n_global_classes]
        if self.config.output == "shared":
            sizes = sorted({task.n_classes for task in tasks})
            if len(sizes) > 1:
                raise ConfigError(f"output=shared reuses one output layer of the task's size, but the tasks of "
                                  f"{self.benchmark.name} have {'/'.join(map(str, sizes))} classes; use "
                                  "output=class_incremental or per_task")
            return sizes
        return [task.n_classes for task in tasks]

    def _task_targets(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(train, test, validation) targets: local labels, or global class ids for one head
        over every class (class-incremental)."""
        task = self.benchmark.tasks[index]
        if self.config.output != "class_incremental":
            return task.y_train, task.y_test, task.y_val
        classes = torch.tensor(task.classes, device=self.device)
        return classes[task.y_train], classes[task.y_test], None if task.y_val is None else classes[task.y_val]

    def _split(self, task: int, split: str) -> tuple[Inputs, torch.Tensor]:
        """Task ``task``'s test (or validation) inputs and the targets the model is scored on."""
        inputs = self.benchmark.tasks[task].x_val if split == "val" else self.benchmark.tasks[task].x_test
        targets = self._targets[task][2 if split == "val" else 1]
        if inputs is None or targets is None:
            raise ValueError(f"task {task} has no {split} split (RunConfig.validation is 0)")
        return inputs, targets

    def view(self, task: int) -> TaskView:
        return TaskView(task, self.head_of(task), self.benchmark.tasks[task].x_train, self._targets[task][0])

    def _prepare_task(self, task: int, bar=None) -> tuple[list[int], set[torch.nn.Parameter]] | None:
        """The tasks whose data train now and the parameters the optimiser may change, after the
        method's ``before_task`` and with only those parameters requiring gradients; None, with the
        task counted done, where the method trains nothing now (joint after its one phase)."""
        train_on = self.method.tasks_to_train(task, self.benchmark.n_tasks)
        if not train_on:
            if bar is not None:
                bar.update(self.config.epochs)
            self.model.remember_norm_stats(task)
            return None
        for t in train_on:
            self.method.before_task(self.view(t))
        trainable = set(self.method.trainable_parameters(task))
        for p in self.model.parameters():
            p.requires_grad_(p in trainable)
        return train_on, trainable

    def _blown_up(self, first: float, last: float, peak: float, task: int, rise_judged: bool = True,
                  accuracy: float | None = None) -> str | None:
        """Why a task whose every loss stayed finite still counts as diverged, or None.

        A run that blows up without NaN (an lr far too large, a penalty step overshooting its
        anchor) leaves a dead network, ACC at chance. Its task ends no better than uniform
        guessing *and* either above its untrained loss (the task's first batch) or after a peak
        of more than PEAK_FACTOR times it (the loss exploded, then settled at chance: a dead
        trunk under a fresh head gives the first batch's loss again). A run that learns, however
        slowly (a tiny lr), neither rises nor spikes; one that learned well ends far below
        chance even where its first batch was already good (transfer). All three numbers come
        from the training batches in training mode, so measuring costs nothing.
        """
        outputs = self.head_sizes[self.head_of(task)]
        chance = self.objective.untrained_loss(outputs)
        if chance is None or last < CHANCE_FRACTION * chance:  # a loss without a chance level: NaN/inf only
            return None
        # A dead network also *predicts* at chance. A head that still classifies its training
        # batches well while its loss is high (large logits on a nearly frozen trunk: its own
        # SGD oscillating) has not blown up, it is noisy; its accuracy matrix says the rest.
        if accuracy is not None and accuracy >= 1.0 / outputs + ACCURACY_MARGIN:
            return None
        if rise_judged and last > BLOWUP_FACTOR * first:
            return (f"finite blow-up: the task's training loss rose from {first:.4g} (first batch) to {last:.4g} "
                    f"(last epoch), no better than chance (log {round(math.exp(chance))} = {chance:.3g})")
        if peak > PEAK_FACTOR * first:
            return (f"finite blow-up: the task's training loss peaked at {peak:.4g} (first batch {first:.4g}) and "
                    f"ended at {last:.4g} (last epoch), no better than chance (log {round(math.exp(chance))} = "
                    f"{chance:.3g})")
        return None

    def _collapsed(self, val_rows: list[list[float]]) -> tuple[int, str] | None:
        """The task at which a finished run had in fact died, and why, or None.

        The quiet death: the loss exploded in a term the task's own loss does not show (LwF's
        distillation past its λ edge), the network died, and each task's loss then sat at chance
        with no rise or peak. On held-out validation data every task seen is at most
        CHANCE_SHARE of the way from chance to perfect from that task to the end, new tasks
        included, where the row before had learned one (LEARNED_SHARE of that way). A network
        frozen by its penalty keeps its old tasks; one that forgets them learns the new ones; one
        that wanders through chance and learns again later is alive; a slow learner never
        learned any: none of them is caught. Validation, never the test split, decides, since a
        diverged run is never chosen; without it the rule is off."""
        scores = [self.objective.chance_score(self.head_sizes[self.head_of(i)]) for i in range(len(val_rows))]
        chances = [c for c in scores if c is not None]
        if len(chances) < len(scores) or len(val_rows) < 2:
            return None
        at_chance = [all(row[i] <= chances[i] + CHANCE_SHARE * (1 - chances[i]) for i in range(seen + 1))
                     for seen, row in enumerate(val_rows)]
        task = next((t for t in range(1, len(val_rows)) if all(at_chance[t:])), None)
        if task is None:
            return None
        before = val_rows[task - 1]
        learned = [i for i in range(task) if before[i] >= chances[i] + LEARNED_SHARE * (1 - chances[i])]
        if not learned:
            return None
        lost = ", ".join(f"task {i + 1} {before[i]:.3f} -> {val_rows[task][i]:.3f}" for i in learned)
        return task, (f"collapse to chance: from task {task + 1} on, validation accuracy at chance on every task "
                      f"seen ({lost}), every loss finite (a dead network)")

    def _schedule(self, tasks: list[int], shuffle: torch.Generator) -> list[tuple[int, torch.Tensor]]:
        """Shuffled mini-batch index tensors; with several tasks (joint), batches interleaved.
        ``shuffle``: the generator of the data order (a run's own; each member's in a stack)."""
        batches = []
        for t in tasks:
            order = self._order(len(self._targets[t][0]), shuffle).to(self.device)
            batches += [(t, index) for index in self._split_batches(order)]
        if len(tasks) > 1:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=shuffle)]
        return batches

    def _order(self, n: int, shuffle: torch.Generator) -> torch.Tensor:
        """The order of a task's ``n`` training samples for one epoch: a permutation. With
        ``iterations``, the order of exactly that many mini-batches: successive passes, each a
        fresh permutation cut to complete batches (the reference code's loader with drop_last,
        made anew when it runs out)."""
        if not self.config.iterations:
            return torch.randperm(n, generator=shuffle)
        size = self.config.batch_size
        per_pass, needed = (n // size) * size, self.config.iterations * size
        if per_pass == 0:
            raise ConfigError(f"iterations={self.config.iterations} draws complete batches of {size}, and a task has "
                              f"{n} training samples; choose a smaller batch_size")
        passes = [torch.randperm(n, generator=shuffle)[:per_pass] for _ in range(-(-needed // per_pass))]
        return torch.cat(passes)[:needed]

    def _split_batches(self, order: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, ...]:
        """``order`` cut into mini-batches along ``dim``; with drop_last, complete ones only."""
        batches = order.split(self.config.batch_size, dim=dim)
        if self.config.drop_last and batches[-1].shape[dim] < self.config.batch_size:
            batches = batches[:-1]
        if not batches:
            raise ConfigError(f"drop_last=true with batch_size={self.config.batch_size} leaves no complete batch of "
                              f"{order.shape[dim]} training samples; choose a smaller batch_size or drop_last=false")
        return batches



class Experiment(RunLoop):
    """One method on one benchmark, from a random initialisation to the last task."""

    def __init__(
        self,
        config: RunConfig,
        benchmark: Benchmark | None = None,
        joint_accuracy: list[float] | None = None,
    ):
        super().__init__(config.resolved(), benchmark)
        method_cls = get_method(self.config.method)
        torch.manual_seed(self.config.seed)
        self.model: ContinualModel = build_model(
            self.config.model, self.benchmark.input_shape, self.head_sizes, self.config.model_options
        ).to(self.device)
        self.model.head_is_shared = self.config.penalise_head
        self.method: Method = method_cls(self.model, **self.config.method_options)
        self.method.record_importances = self.config.save_importances
        self.shuffle = torch.Generator().manual_seed(self.config.seed)
        self.method.generator.manual_seed(method_seed(self.config.seed))
        self.last_loss = math.nan  # mean training loss (with any penalty) of the latest epoch
        initial = self.evaluate()  # b_i of the standard FWT: the untrained model
        initial_val = self.evaluate("val") if self.has_validation else []
        self.record = RunRecord(self.config, self.method, self.benchmark, self.objective, initial, initial_val,
                                joint_accuracy)

    # -- the loop ------------------------------------------------------------------------
    @property
    def next_task(self) -> int:
        return len(self.record.rows)

    @property
    def members(self) -> list[RunRecord]:
        return [self.record]

    def run(self, on_task_end: Callable[[TaskReport, Experiment], None] | None = None,
            progress: bool = False) -> RunResult:
        """Train the remaining tasks; ``on_task_end`` runs after each (report, checkpoint)."""
        report = None if on_task_end is None else (lambda task: on_task_end(self.report(task), self))
        self._run_tasks(report, progress)
        return self.result()


    def _progress_line(self, task: int, seconds: float) -> str:
        return (f"{self.config.method}: task {task + 1}/{self.benchmark.n_tasks} done in {seconds:.2f} s, "
                f"mean loss of its last epoch {self.last_loss:.4g}, "
                f"ACC on tasks seen {metrics.running_accuracy(self.record.rows[task], task):.4f}")

    def _stepper(self, trainable: set[torch.nn.Parameter]) -> Stepper:
        return _OptimizerSteps(self, trainable)

    def _batches(self, tasks: list[int]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(task, x, y) per mini-batch of the schedule: index gathers from tensors in memory, or
        batches decoded by DataLoader workers for tasks held as files (benchmarks/streaming.py)."""
        schedule = self._schedule(tasks, self.shuffle)
        streams = {}
        for t in tasks:
            images = self.benchmark.tasks[t].x_train
            if isinstance(images, ImageFiles):
                own = [index for s, index in schedule if s == t]
                streams[t] = iter(batch_loader(images, own, images.workers, self.device.type == "cuda"))
        for t, index in schedule:
            x = next(streams[t]).to(self.device, non_blocking=True) if t in streams \
                else self.benchmark.tasks[t].x_train[index]
            yield t, x, self._targets[t][0][index]

    def _step(self, optimizer: SGD | Adam, task: int, x: torch.Tensor,
              y: torch.Tensor, count: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One optimiser step; returns (loss with any penalty, the objective's own loss alone:
        cross-entropy for classification, and with ``count`` the batch's correct predictions, else None)."""
        head = self.head_of(task)
        self.method.heads_reached.clear()
        rows = self.method.extra_rows(task, head, len(y))
        if rows is None:
            forward = self.objective.training_forward(self.model, head, x, y)  # objectives.py
            loss = forward.loss
        else:
            forward, loss = forward_with_rows(self.objective, self.method, head, x, y, rows)
        step = Step(task, head, x, y, forward.features, forward.outputs)
        penalty = self.method.penalty(step)
        if penalty is not None:
            loss = loss + penalty
        optimizer.zero_grad()
        loss.backward()
        self.method.before_update()
        optimizer.step()
        self.method.after_step(optimizer.param_groups[0]["lr"])
        self.method.observe(step)
        right = self.objective.correct(forward.outputs.detach(), y) if count else None
        return loss.detach(), forward.loss.detach(), right

    def evaluate(self, split: str = "test") -> list[float]:
        """The objective's score (accuracy for classification) on every task's ``split`` (test
        or val), also on tasks not trained yet (for the standard FWT)."""
        return self._scores(split)[0]

    # -- results ---------------------------------------------------------------------------
    def report(self, task: int) -> TaskReport:
        return self.record.report(task)

    def result(self) -> RunResult:
        return self.record.result()

    # -- checkpoints -----------------------------------------------------------------------
    def _own_state(self) -> dict[str, Any]:
        # the record's fields at the top level, as single-run checkpoints always had them
        state = {"config": self.config.to_dict(), **self.record.saved(),
                 "shuffle_rng": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                 "method_rng": self.method.generator.get_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_own(self, state: Mapping[str, Any]) -> None:
        self.record.load(state)
        self.record.seconds = float(state["seconds"])
        self.shuffle.set_state(state["shuffle_rng"])
        if "method_rng" in state:  # checkpoints from before methods drew
            self.method.generator.set_state(state["method_rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


class _OptimizerSteps:
    """One model's steps: SGD or Adam over the trainable parameters (``sgd.SGD``, ``adam.Adam``:
    torch.optim's steps without its import cost), rebuilt per task (the lr schedule restarting each task), batches
    by index or streamed from files."""

    def __init__(self, experiment: Experiment, trainable: set[torch.nn.Parameter]) -> None:
        self.experiment = experiment
        params = [p for p in experiment.model.parameters() if p in trainable]
        self.optimizer: SGD | Adam = Adam(params, lr=experiment.config.lr) if experiment.config.optimizer == "adam" \
            else SGD(params, lr=experiment.config.lr, momentum=experiment.config.momentum)

    def start_epoch(self, epoch: int, alive: list[bool]) -> None:
        config = self.experiment.config
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay**epoch  # section 4.1: decayed lr

    def batches(self, tasks: list[int]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        return self.experiment._batches(tasks)

    def step(self, batch: tuple[int, torch.Tensor, torch.Tensor],
             count: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        task, x, y = batch
        loss, objective_loss, right = self.experiment._step(self.optimizer, task, x, y, count=count)
        return loss.view(1), objective_loss.view(1), None if right is None else right.view(1), len(y)


@dataclass
class RunRecord:
    """What a run keeps of itself, one :class:`Experiment` or each member of a stack
    (stacked.py): rows, status and saved arrays. A run's :class:`TaskReport` and
    :class:`RunResult` are computed from this record alone (:func:`task_report`,
    :func:`run_result`), so the two kinds of run cannot drift apart in what they report."""

    config: ResolvedRunConfig
    method: Method
    benchmark: Benchmark
    objective: Objective
    initial_accuracy: list[float]  # b_i of the standard FWT: the untrained model
    initial_val_accuracy: list[float]
    joint_accuracy: list[float] | None = None
    rows: list[list[float]] = field(default_factory=list)
    val_rows: list[list[float]] = field(default_factory=list)
    status: str = "running"
    diverged_task: int | None = None  # index from 0
    diverged_reason: str | None = None
    seconds: float = 0.0
    importances: list[dict[str, torch.Tensor]] = field(default_factory=list)
    parameters: list[dict[str, torch.Tensor]] = field(default_factory=list)
    probe_importances: list[dict[str, torch.Tensor]] = field(default_factory=list)
    pictures: list[dict[str, torch.Tensor]] = field(default_factory=list)
    stored_examples: int = 0  # the method's stored training examples after the last recorded task

    # What a checkpoint keeps of the record (the rest is the run's settings, rebuilt on resume).
    SAVED: ClassVar[tuple[str, ...]] = (
        "rows", "val_rows", "initial_accuracy", "initial_val_accuracy", "status", "diverged_task", "diverged_reason",
        "seconds", "importances", "parameters", "probe_importances", "pictures", "stored_examples")

    def report(self, task: int) -> TaskReport:
        return task_report(self, task)

    def result(self, stack_members: int = 1) -> RunResult:
        result = run_result(self)
        result.stack_members = stack_members
        return result

    def diverge(self, task: int, reason: str) -> None:
        self.status, self.diverged_task, self.diverged_reason = "diverged", task, reason

    def keep_tasks(self, count: int) -> None:
        """Forget what was recorded after the first ``count`` tasks (a collapse found at the end)."""
        for name in ("rows", "val_rows", "importances", "parameters", "probe_importances", "pictures"):
            setattr(self, name, getattr(self, name)[:count])

    def stop(self) -> None:
        """End the run after the tasks it has recorded (an early-stopping scheduler's decision,
        sweep/rungs.py): a stack's member ends like a diverged one (nothing recorded, and out of the
        batched model from the next task on: StackedExperiment.repack)."""
        self.status = "stopped"

    def saved(self) -> dict[str, Any]:
        """The checkpointed fields (lists copied: the run goes on appending)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in ((k, getattr(self, k)) for k in self.SAVED)}

    def load(self, saved: Mapping[str, Any]) -> None:
        """Restore the fields of :meth:`saved` (missing ones keep their value: older checkpoints)."""
        for name in self.SAVED:
            if name in saved:
                value = saved[name]
                setattr(self, name, list(value) if isinstance(value, list) else value)


def task_report(record: RunRecord, task: int) -> TaskReport:
    """The report after task index ``task`` (from 0) has been trained and scored."""
    has_validation = record.config.validation > 0
    return TaskReport(
        task=task,
        n_tasks=record.benchmark.n_tasks,
        accuracy_row=record.rows[task],
        accuracy_matrix=[list(r) for r in record.rows],
        running_acc=metrics.running_accuracy(record.rows[task], task),
        seconds=record.seconds,
        validation_matrix=[list(r) for r in record.val_rows] if has_validation else None,
    )


def run_result(record: RunRecord) -> RunResult:
    """The run's metrics (eqs. 6-8) from its accuracy matrices; NaN for a diverged run."""
    has_validation = record.config.validation > 0
    reference_run = record.method.learns_all_tasks_at_once
    joint = record.rows[-1] if reference_run and record.rows else record.joint_accuracy
    summary = (
        metrics.summarize(record.rows, record.initial_accuracy, joint)
        if record.rows
        else {k: math.nan for k in ("acc", "bwt", "fwt", "fwt_paper", "smt")}
    )
    ended_early = record.status in ("diverged", "stopped")
    if ended_early:  # a diverged or stopped run has no final metrics: NaN, never a partial score
        summary = {k: math.nan for k in summary}
    validation = None
    if has_validation:
        reference = record.val_rows[-1] if reference_run and record.val_rows else None
        validation = (metrics.summarize(record.val_rows, record.initial_val_accuracy, reference)
                      if record.val_rows and not ended_early else {k: math.nan for k in summary})
    if reference_run:  # it trains every task at once: transfer "before task i" has no meaning
        for values in (summary, validation or {}):
            values["fwt"] = math.nan
    return RunResult(
        config=record.config.to_dict(),
        accuracy_matrix=[list(r) for r in record.rows],
        initial_accuracy=list(record.initial_accuracy),
        metrics=summary,
        status=record.status,
        seconds=record.seconds,
        task_names=[t.name for t in record.benchmark.tasks],
        diverged_task=record.diverged_task,
        diverged_reason=record.diverged_reason,
        importances=record.importances,
        score_name=record.objective.score_name,
        higher_is_better=record.objective.higher_is_better,
        pictures=record.pictures,
        parameters=record.parameters,
        probe_importances=record.probe_importances,
        validation_matrix=[list(r) for r in record.val_rows] if has_validation else None,
        initial_validation_accuracy=list(record.initial_val_accuracy) if has_validation else None,
        validation_metrics=validation,
        stored_examples=record.stored_examples,
    )


def forward_with_rows(objective: Objective, method: Method, head: int, x: torch.Tensor, y: torch.Tensor,
                      rows: Rows) -> tuple[Forward, torch.Tensor]:
    """(the current task's rows' Forward: what penalties and the blow-up rule see; the mean loss
    over every row of the mini-batch with a method's stored rows appended: experience replay's).
    One trunk pass over all rows (batch norm sees them together), each row through its own head;
    for a stack, (K, B, ...) batches with (K, R, ...) rows give one mean per member over its real rows."""
    n, batch_dim = y.shape[-1], y.dim() - 1
    real_rows = None if rows.counts is None else rows.counts + n
    features = trunk_features(method.model, torch.cat([x, rows.x], dim=batch_dim), real_rows)
    current_features = features.narrow(batch_dim, 0, n)
    outputs = method.model.heads[head](current_features)
    current = objective.sample_losses(outputs, y)
    total = current.sum(-1)
    for _, logits, mine in method.head_outputs(features.narrow(batch_dim, n, rows.y.shape[-1]), rows):
        total = total + (objective.sample_losses(logits, torch.where(mine, rows.y, 0)) * mine).sum(-1)
    return Forward(current.mean(-1), current_features, outputs), total / (n + rows.real().sum(-1))


def _progress_bar(experiment: RunLoop, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():  # a log or a pipe: Experiment.run prints one line per task instead
        return None
    remaining = experiment.benchmark.n_tasks - experiment.next_task
    return tqdm(total=remaining * experiment.config.epochs, unit="epoch", desc=experiment.config.method,
                leave=False)


def run_experiment(config: RunConfig, **kwargs: Any) -> RunResult:
    """Build and run one experiment (convenience for scripts and tests)."""
    progress = kwargs.pop("progress", False)
    on_task_end = kwargs.pop("on_task_end", None)
    return Experiment(config, **kwargs).run(on_task_end=on_task_end, progress=progress)

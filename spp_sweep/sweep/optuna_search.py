"""The searcher of a sweep's Optuna phase: every method searched by Optuna in one Ray Tune
experiment, each with its own Optuna study, several configurations asked at once and trained as
one stack.

One experiment, not one per method, because each Ray Tune experiment pays its fixed costs again
(its actors end with it, so every phase's workers are new processes that import torch and the
engine anew: docs/results/speed.md, "Fixed costs per phase"); here a worker that ends a trial of
one method takes the next trial, of whatever method, without a new process. The searcher asks
the methods in turn (round robin, in the study's order), so every method gets its own budget and
no method's search waits for another's to end.

For each Ray trial it asks one method's sampler for K configurations through Optuna's
ask-and-tell interface (TPE with ``constant_liar`` where K > 1, so that configurations asked but
not yet told count as poor and a batch spreads out instead of repeating one point), returns them
as one stacked trial (``stack_plan.stacked_spec``; K = 1: the configuration alone), reports each
member's score after every task as an intermediate value, and tells each member's own final
score back when the trial ends. Each method's study is ``optuna-METHOD`` in ``PHASE/optuna.journal``
(Optuna's journal storage), so ``optuna-dashboard`` sees one Optuna trial per configuration.

Optuna's journal is appended to at once, while Ray Tune saves this searcher with its experiment
snapshot: a driver killed between the two leaves a snapshot older than the journal, and a trial
the journal holds as finished is restored as running, restarts from its checkpoint and reports
again. The journal is the truth: a report or an end for a trial it already finished is dropped,
never told twice. A resumed phase knows which Optuna trials each Ray trial holds (a restarted
trial keeps its configuration, which Ray Tune saved).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray.tune.search import Searcher

from .recovery import EndedConfiguration
from .stack_plan import stacked_spec

PREFIX = "trial/params/"  # how a searched value is named in Optuna (optuna-dashboard shows these names)


def _tell_stopped(study: optuna.Study, trial: optuna.Trial, values: dict[str, Any]) -> None:
    """A configuration the ASHA scheduler stopped (rungs.py): pruned, with the score it was judged
    on as its value after that many tasks. Ray's OptunaSearch would tell that partial score as a
    finished trial's, and a score over fewer tasks is not on the scale of one over the whole
    stream (one binary task scores about 0.5 by chance, five of them together less): TPE ranks
    pruned trials below finished ones, further along first."""
    _report(study, trial.number, float(values["score"]), int(values["task"]))
    study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)


def tell_ended(study: optuna.Study, space: dict[str, Any], done: list[EndedConfiguration]) -> None:
    """Add the configurations a phase's earlier experiment ended to a new study, each as it
    would have been told live: a finished or diverged one COMPLETE with its score, one the ASHA
    scheduler stopped PRUNED with its score after that many tasks (``_tell_stopped``), never as
    if a partial score were a whole run's."""
    for ended in done:
        params = {f"{PREFIX}{k}": v for k, v in ended.params.items()}
        if ended.stopped_after is None:
            trial = optuna.trial.create_trial(params=params, distributions=space, value=ended.score)
        else:
            # the value Optuna gives a pruned trial told live: its last intermediate one
            trial = optuna.trial.create_trial(params=params, distributions=space, state=optuna.trial.TrialState.PRUNED,
                                              value=ended.score, intermediate_values={ended.stopped_after: ended.score})
        study.add_trial(trial)


def _finished(study: optuna.Study, number: int) -> bool:
    """Whether the journal (read afresh) holds Optuna trial ``number`` as ended."""
    trials = study.get_trials(deepcopy=False)
    return number < len(trials) and trials[number].state.is_finished()


@dataclass
class MethodStudy:
    """One method's search within the phase: its Optuna study, the trial spec its configurations
    fill in, how many it asks at once and in all, and what each of its trials' configs carries
    besides (its rung keeper, rungs.py)."""

    study: optuna.Study
    space: dict[str, Any]
    base: dict[str, Any]
    batch: int
    budget: int
    asked: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return self.budget - self.asked


def method_study(space: dict[str, Any], sampler: optuna.samplers.BaseSampler, base: dict[str, Any], batch: int,
                 budget: int, done: list[EndedConfiguration], storage: Any = None, study_name: str | None = None,
                 extra: dict[str, Any] | None = None) -> MethodStudy:
    """A method's study, with the configurations an earlier experiment of the phase ended told
    first (they count against ``budget``)."""
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=study_name,
                                load_if_exists=storage is not None)
    tell_ended(study, space, done)
    return MethodStudy(study, space, base, batch, budget, len(done), dict(extra or {}))


class BatchedOptunaSearch(Searcher):
    """Suggests trials of each method in turn, ``batch`` configurations per trial, until every
    method's budget is asked."""

    def __init__(self, methods: list[MethodStudy]) -> None:
        super().__init__(metric="score", mode="max")
        self._methods = methods
        self._turn = 0  # the method asked next
        self._pending: dict[str, tuple[int, list[int]]] = {}  # Ray trial id -> (method, members' trial numbers)

    def suggest(self, trial_id: str) -> Any:
        """The next trial's config ({"trial": spec, ...}), or Searcher.FINISHED (a string, which
        Ray's own annotation of this method leaves out) once every budget is asked."""
        order = [(self._turn + k) % len(self._methods) for k in range(len(self._methods))]
        index = next((i for i in order if self._methods[i].left > 0), None)
        if index is None:
            return Searcher.FINISHED
        self._turn = index + 1
        method = self._methods[index]
        asked = [method.study.ask(method.space) for _ in range(min(method.batch, method.left))]
        method.asked += len(asked)
        self._pending[trial_id] = (index, [trial.number for trial in asked])
        members = [{**method.base, "params": {name[len(PREFIX):]: value for name, value in trial.params.items()}}
                   for trial in asked]
        return {"trial": stacked_spec(members) if len(members) > 1 else members[0], **method.extra}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Each running member's score after this task, as the Optuna trial's intermediate value."""
        if trial_id not in self._pending or result.get("replayed"):
            return
        index, numbers = self._pending[trial_id]
        study = self._methods[index].study
        values = result.get("members") or [result]
        for number, member in zip(numbers, values):
            score, task = member.get("score"), member.get("task") or result.get("training_iteration")
            if score is None or task is None or member.get("status") not in (None, "running"):
                continue
            _report(study, number, float(score), int(task))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self._pending:
            return
        index, numbers = self._pending.pop(trial_id)
        study = self._methods[index].study
        values = (result or {}).get("members") or ([result] if result else [])
        for k, number in enumerate(numbers):
            score = values[k].get("score") if k < len(values) and not error else None
            # skip_if_finished: told before a kill that the restored snapshot predates (see above)
            if score is not None and values[k].get("status") == "stopped":
                if not _finished(study, number):
                    _tell_stopped(study, _trial(study, number), values[k])
            elif score is None:
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(number, float(score), skip_if_finished=True)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__.copy(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:  # the experiment's own state (provenance.py checks the folder)
            self.__dict__.update(pickle.load(file))


def _report(study: optuna.Study, number: int, value: float, step: int) -> None:
    """Report an intermediate value once: not to a trial that finished before the snapshot
    caught up, nor again at a step a restarted trial replays."""
    trial = _trial(study, number)
    frozen = study._storage.get_trial(trial._trial_id)
    if not frozen.state.is_finished() and step not in frozen.intermediate_values:
        trial.report(value, step=step)


def _trial(study: optuna.Study, number: int) -> optuna.Trial:
    """The running Optuna trial ``number`` of ``study``, to report to or tell."""
    return optuna.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))

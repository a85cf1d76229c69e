"""The searchers of Optuna phases: Ray Tune's ``OptunaSearch`` made safe to resume, and a
Bayesian search that suggests several configurations at once and trains them as one stack.

Both keep Optuna's study in ``PHASE/optuna.journal``, which is appended to at once, while Ray
Tune saves the searcher's own state with its experiment snapshot every few seconds. A driver
killed between the two leaves a snapshot older than the journal: a trial the journal holds as
finished is restored as running, restarts from its checkpoint and reports again. The journal is
the truth: a report or an end for a trial it already finished is dropped, never told twice.

Ray Tune's ``OptunaSearch`` gives each trial one configuration. ``BatchedOptunaSearch`` drives
Optuna's ask-and-tell interface itself: for each Ray trial it asks the sampler for K
configurations (TPE with ``constant_liar``, so that configurations asked but not yet told count
as poor and a batch spreads out instead of repeating one point), returns them as one stacked
trial (``stacking.stacked_spec``), and tells each member's own score back when the trial ends.
Optuna's study is the one in ``PHASE/optuna.journal`` (as for unbatched phases), so
``optuna-dashboard`` sees one Optuna trial per configuration. Ray Tune saves this searcher with
its experiment: a resumed phase knows which Optuna trials each Ray trial holds (a restarted
trial keeps its configuration, which Ray Tune saved).
"""

from __future__ import annotations

import pickle
from typing import Any, cast

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .recovery import EndedConfiguration
from .stacking import stacked_spec

PREFIX = "trial/params/"  # how the unbatched phases name a searched value in Optuna (and the reports read)


class JournalOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that lets a restored trial replay results the journal already holds."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:  # finished before the snapshot caught up
            self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        open_here = ot_trial is not None and trial_id not in self._completed_trials
        if open_here and _finished(cast(optuna.Study, self._ot_study), self._ot_trials[trial_id].number):
            self._completed_trials.add(trial_id)  # its score is in the journal: not told a second time
            return
        if ot_trial is not None and open_here and result and result.get("status") == "stopped" and not error:
            _tell_stopped(cast(optuna.Study, self._ot_study), ot_trial, result)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def _tell_stopped(study: optuna.Study, trial: optuna.Trial, values: dict[str, Any]) -> None:
    """A configuration the ASHA scheduler stopped (rungs.py): pruned, with the score it was judged
    on as its value after that many tasks. Ray's OptunaSearch would tell that partial score as a
    finished trial's, and a score over fewer tasks is not on the scale of one over the whole
    stream (one binary task scores about 0.5 by chance, five of them together less): TPE ranks
    pruned trials below finished ones, further along first."""
    trial.report(float(values["score"]), step=int(values["task"]))
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


class BatchedOptunaSearch(Searcher):
    """Suggests ``batch`` configurations per trial until ``budget`` configurations are asked."""

    def __init__(self, space: dict[str, Any], sampler: optuna.samplers.BaseSampler, base: dict[str, Any],
                 batch: int, budget: int, done: list[EndedConfiguration],
                 storage: Any = None, study_name: str | None = None) -> None:
        super().__init__(metric="score", mode="max")
        self._space, self._base, self._batch, self._budget = space, base, batch, budget
        self._study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage,
                                          study_name=study_name, load_if_exists=storage is not None)
        tell_ended(self._study, space, done)  # ended before an unreadable state was moved aside: counted
        self._asked = len(done)
        self._pending: dict[str, list[int]] = {}  # Ray trial id -> its members' Optuna trial numbers

    def suggest(self, trial_id: str) -> Any:
        """The next trial's config ({"trial": spec}), or Searcher.FINISHED (a string, which Ray's
        own annotation of this method leaves out) once the budget is asked."""
        left = self._budget - self._asked
        if left <= 0:
            return Searcher.FINISHED
        asked = [self._study.ask(self._space) for _ in range(min(self._batch, left))]
        self._asked += len(asked)
        self._pending[trial_id] = [trial.number for trial in asked]
        members = [{**self._base, "params": {name[len(PREFIX):]: value for name, value in trial.params.items()}}
                   for trial in asked]
        return {"trial": stacked_spec(members) if len(members) > 1 else members[0]}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        numbers = self._pending.pop(trial_id, [])
        values = (result or {}).get("members") or ([result] if result else [])
        for k, number in enumerate(numbers):
            score = values[k].get("score") if k < len(values) and not error else None
            # skip_if_finished: told before a kill that the restored snapshot predates (see above)
            if score is not None and values[k].get("status") == "stopped":
                if not _finished(self._study, number):
                    own = self._study._storage.get_trial_id_from_study_id_trial_number(self._study._study_id, number)
                    _tell_stopped(self._study, optuna.Trial(self._study, own), values[k])
            elif score is None:
                self._study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            else:
                self._study.tell(number, float(score), skip_if_finished=True)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__.copy(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:  # the experiment's own state (provenance.py checks the folder)
            self.__dict__.update(pickle.load(file))

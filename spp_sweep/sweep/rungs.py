"""Early stopping per configuration, inside stacks too: asynchronous successive halving (ASHA)
on the task index, decided for each member of a trial rather than for the trial.

Ray Tune's ``ASHAScheduler`` stops whole trials, and a stacked trial (stack_plan.py) holds many
configurations: stopped by its best member's score, it would keep every weak member or lose
every strong one. So a study with ``scheduler: {type: asha}`` keeps the rungs itself, in one Ray
actor per phase (per method in the Optuna phase, where every searched method trains: runner.py;
:class:`RungKeeper`) that every trial asks after each task: each running
member's score at task t is recorded at the highest rung it has reached and compared with that
rung's cutoff, exactly as Ray's ``_Bracket.on_result`` does for a trial (one bracket, rungs at
grace_period·rf^k tasks, the cutoff the (1 − 1/rf) percentile of the values recorded there, a
value below it stopped; tests/unit/sweep/test_rungs.py feeds both the same values). A stopped
member is frozen as a diverged one is (stacked.py: nothing recorded, out of the batched model
from the next task on), reports
``status: stopped`` with the score it was judged on, and a trial whose members have all ended
ends. A configuration trained alone asks the same record, so one phase's decisions never depend
on how its configurations were stacked, only on the order their scores arrive in (as in Ray).

The record is saved in the phase folder (trial_files.RUNGS) after every new decision, and each
decision is kept: a trial restarted from an older checkpoint is told again what it was told. On
storage that is not a local or shared file system the record lives as long as the driver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import trial_files
from .storage import local_folder

NAMESPACE = "spp-sweep"  # the Ray namespace of the phases' rung keepers


class Rungs:
    """One bracket of asynchronous successive halving, as Ray Tune's ``ASHAScheduler`` keeps it
    (``brackets=1``, ``stop_last_trials=True``): rungs at ``grace_period · rf^k`` tasks, below
    ``max_t``'s; each configuration is recorded once per rung, at the highest it has reached."""

    def __init__(self, grace_period: int, max_t: int, reduction_factor: float) -> None:
        self.reduction_factor = float(reduction_factor)
        count = int(np.log(max_t / grace_period) / np.log(self.reduction_factor) + 1)  # Ray's MAX_RUNGS, s = 0
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (grace_period * self.reduction_factor ** k, {}) for k in reversed(range(count))]
        self.decisions: dict[tuple[str, int], bool] = {}

    def cutoff(self, recorded: Mapping[str, float]) -> float | None:
        """The value a configuration must reach to continue past a rung (None: nothing recorded)."""
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100))

    def decide(self, key: str, task: int, value: float) -> bool:
        """Whether the configuration ``key``, scoring ``value`` after ``task`` tasks (from 1), stops;
        asked again for the same task (a restarted trial), the same answer."""
        if (key, task) in self.decisions:
            return self.decisions[(key, task)]
        stop = False
        for milestone, recorded in self.rungs:  # highest first
            if task < milestone or key in recorded:
                continue
            cutoff = self.cutoff(recorded)
            stop = cutoff is not None and value < cutoff
            recorded[key] = value
            break
        self.decisions[(key, task)] = stop
        return stop

    def saved(self) -> dict[str, Any]:
        """The record as plain JSON (trial_files.RUNGS)."""
        return {"rungs": [[milestone, [[k, v] for k, v in recorded.items()]] for milestone, recorded in self.rungs],
                "decisions": [[key, task, stop] for (key, task), stop in self.decisions.items()]}

    def load(self, saved: Mapping[str, Any]) -> None:
        """Continue from :meth:`saved` (of a record with the same rungs)."""
        values = {float(milestone): dict(pairs) for milestone, pairs in saved["rungs"]}
        for milestone, recorded in self.rungs:
            recorded.update(values.get(float(milestone), {}))
        self.decisions.update({(key, int(task)): bool(stop) for key, task, stop in saved["decisions"]})


class RungKeeper:
    """The rungs of one phase, as a Ray actor every trial of the phase asks (see the module)."""

    def __init__(self, grace_period: int, max_t: int, reduction_factor: float, folder: str | None) -> None:
        self.rungs = Rungs(grace_period, max_t, reduction_factor)
        self.folder = Path(folder) if folder else None
        saved = trial_files.read_rungs(self.folder) if self.folder else None
        if saved is not None:
            self.rungs.load(saved)

    def decide(self, asked: Sequence[tuple[str, int, float]]) -> list[bool]:
        """Each (configuration, task, score) in ``asked``, in order: whether it stops."""
        new = any((key, task) not in self.rungs.decisions for key, task, _ in asked)
        stops = [self.rungs.decide(key, task, value) for key, task, value in asked]
        if new and self.folder is not None:  # before the answers leave: a restarted driver keeps them
            trial_files.write_rungs(self.folder, self.rungs.saved())
        return stops


def keeper_name(phase_path: str) -> str:
    """The actor name of a phase's keeper: the same for a restored phase (its trials' configs hold it)."""
    return "spp-rungs-" + hashlib.sha1(phase_path.encode()).hexdigest()[:16]


def start_keeper(scheduler: Mapping[str, Any], max_t: int, phase_path: str) -> Any:
    """Start (or reach) the keeper of the phase at ``phase_path``; the caller kills it at the
    phase's end. Its record is saved in the phase folder where that is on this file system."""
    import ray

    folder = None if local_folder(phase_path) is None else phase_path
    actor = ray.remote(RungKeeper).options(name=keeper_name(phase_path), namespace=NAMESPACE, num_cpus=0,
                                          get_if_exists=True)
    return actor.remote(int(scheduler.get("grace_period", 1)), max_t,
                        float(scheduler.get("reduction_factor", 2)), folder)


def ask(name: str, asked: Sequence[tuple[str, int, float]]) -> list[bool]:
    """From a trial: which of ``asked`` (configuration, task, score) stop."""
    import ray

    if not asked:
        return []
    keeper = ray.get_actor(name, namespace=NAMESPACE)
    stops: list[bool] = ray.get(keeper.decide.remote([(k, int(t), float(v)) for k, t, v in asked]))
    return [bool(stop) for stop in stops]

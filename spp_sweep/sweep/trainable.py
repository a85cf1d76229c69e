"""The Ray Tune trainable: one trial = the engine's whole sequential-task loop for one
configuration, or for a stack of them trained as one batched model (sweep/stack_plan.py).

After every task it reports the running accuracy row (a stack: every member's) and a checkpoint
holding everything needed to continue (model, method state, RNG states, the finished rows of
the accuracy matrix; the optimiser is rebuilt per task, see ``Experiment.state_dict``). A
restarted trial continues from its last finished task and, on CPU, ends with the numbers of an
uninterrupted run. A diverged run (NaN/inf loss) is *reported* as ``status: diverged`` with
``score = -1`` so the sweep and its sampler go on.

The final checkpoint also holds ``result.json`` (the engine's result, the same file as
``spp-sweep run`` writes; a stack's lists its members) and, when importances, parameters or
pictures are saved, their ``.npz`` files (trial_files.write_results): the analysis package
reads those, never the engine.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from .. import metrics, trial_files
from ..config import RunConfig
from ..engine import Experiment, RunResult, TaskReport
from ..stacked import StackedExperiment
from . import rungs
from .recovery import point_key
from .study import run_settings

STATE_FILE = trial_files.STATE
RESULT_FILE = trial_files.RESULT
DIVERGED_SCORE = -1.0  # below every ACC/BWT/FWT/SMT value, so samplers learn to avoid the region
# Where lower is better (a loss: the VAE's negative ELBO) the score is minus the metric, and a
# diverged run scores below any finished one (losses here are at most tens of thousands of nats).
DIVERGED_LOSS_SCORE = -1e12


def trial_run_config(config: Mapping[str, Any]) -> RunConfig:
    """The RunConfig of a trial, on the CPUs/GPU share Ray assigned to this worker."""
    assigned = ray.get_runtime_context().get_assigned_resources() if ray.is_initialized() else {}
    threads = max(1, int(assigned.get("CPU", 1)))
    device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to our share
    run = run_settings(config["study"], config["trial"])
    return RunConfig.from_dict({**run, "threads": threads, "device": device}).resolved()


def trial_run(config: Mapping[str, Any]) -> Experiment | StackedExperiment:
    """The trial's run: one configuration, or a stack of them (sweep/stack_plan.py) sharing the
    worker's threads and device."""
    assigned = trial_run_config(config if "members" not in config["trial"]
                                else {**config, "trial": config["trial"]["members"][0]})
    if "members" not in config["trial"]:
        return Experiment(assigned)
    return StackedExperiment([RunConfig.from_dict({**run_settings(config["study"], member),
                                                   "threads": assigned.threads, "device": assigned.device})
                              for member in config["trial"]["members"]])


def train_continual(config: dict[str, Any],
                    task_ended: Callable[[int, Experiment | StackedExperiment], None] | None = None) -> None:
    """Function trainable: run (or continue) one configuration or a stack, reporting after each task.
    ``task_ended(task, run)`` runs after each task's training, before its report (the tests'
    trainable injects faults there: tests/faults.py).

    A stacked trial reports as a single one does, with ``members``: each member's values exactly
    as its separate trial would report them (analysis.load expands them into one row each); the
    trial's own ``score`` and ``running_acc`` are its best member's, for Ray's progress table.
    Checkpoints hold the whole run, so a restarted trial continues from its last finished task.
    """
    metric = config.get("metric", "acc")
    run = trial_run(config)
    higher = run.objective.higher_is_better
    restored = restore(config, run)
    if restored is not None:  # finished before a driver restart: report, don't rerun
        results = restored["members"] if isinstance(run, StackedExperiment) else [restored]
        _report(run, [_final_metrics(result, metric, higher) for result in results], replayed=True)
        return
    first = [True]  # this process's first report carries the rows so far (see _running_values)
    keys = [point_key(spec) for spec in config["trial"].get("members", [config["trial"]])]  # rungs.py's names

    def on_task_end(task: int) -> None:
        if task_ended is not None:
            task_ended(task, run)
        if task == run.benchmark.n_tasks - 1:  # the final report comes from the results, with the whole checkpoint
            return
        rows = first.pop() if first else False
        members = []
        for member in run.members:
            if member.status != "running":  # ended (diverged, stopped): its final values, as alone
                members.append(_final_metrics(member.result(len(run.members)).to_json(), metric, higher))
                continue
            members.append(_running_values(member.report(task), member, metric, higher, rows))
        if config.get("rungs"):  # early stopping per configuration (rungs.py): before the checkpoint
            running = [k for k, member in enumerate(run.members) if member.status == "running"]
            stops = rungs.ask(config["rungs"], [(keys[k], task + 1, members[k]["score"]) for k in running])
            for k, stop in zip(running, stops):
                if stop:
                    run.members[k].stop()
                    members[k] = _final_metrics(run.members[k].result(len(run.members)).to_json(), metric, higher)
        _report(run, members)

    results = run.run_tasks(on_task_end)
    _report(run, [_final_metrics(r.to_json(), metric, higher) for r in results], results=results)


def _running_values(report: TaskReport, run: Any, metric: str, higher_is_better: bool,
                    rows: bool = False) -> dict[str, Any]:
    """What a trial reports after a task that was not its last (a separate run or a stack's member).

    With ``rows`` (a trial process's first report) it also carries the matrix's rows so far: a
    trial continued from a checkpoint whose report the driver never received (it was stopped
    in between) would otherwise leave that task missing from the trackers and the curves.
    """
    values = {"task": report.task + 1, "n_tasks": report.n_tasks, "status": "running",
              "running_acc": report.running_acc, "accuracy_row": report.accuracy_row,
              "seconds": report.seconds}
    if rows:
        values["accuracy_matrix"] = report.accuracy_matrix
    if report.validation_matrix:
        values["validation_row"] = report.validation_matrix[-1]
        if rows:
            values["validation_matrix"] = report.validation_matrix
    return {**values, "score": _partial_score(report.accuracy_matrix, run.initial_accuracy, report.validation_matrix,
                                              run.initial_val_accuracy, metric, higher_is_better)}


def _partial_score(matrix: list[list[float]], initial: list[float], val_matrix: list[list[float]] | None,
                   val_initial: list[float] | None, metric: str, higher_is_better: bool) -> float:
    """The selection score on the tasks seen so far (eqs. 6-8 over the matrix's rows): what a
    running trial reports, and what an early-stopping scheduler judged a stopped one on."""
    partial = metrics.summarize(matrix, initial, None)
    if val_matrix:
        partial.update({f"val_{k}": v for k, v in metrics.summarize(val_matrix, val_initial, None).items()})
    return _score(partial.get(metric, math.nan), higher_is_better)


def restore(config: Mapping[str, Any], experiment: Experiment | StackedExperiment) -> dict[str, Any] | None:
    """Load the trial's checkpoint into ``experiment`` if it has one (see resume_from); returns
    the run's result where that checkpoint is a finished run's."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None and checkpoint.filesystem.type_name == "local":
        # Ray Tune's experiment snapshot may name an older checkpoint than the trial wrote last
        # (it is saved asynchronously): continue from the newest one in the trial's own folder.
        return resume_from(newest_first(Path(checkpoint.path).parent, Path(checkpoint.path)), experiment)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            return resume_from([Path(folder)], experiment)
    if config["trial"].get("resume_from"):  # a trial moved aside when its sweep state was unreadable
        return resume_from(newest_first(Path(config["trial"]["resume_from"])), experiment)
    # Ray Tune restarted the trial without naming a checkpoint (a worker killed before its
    # snapshot named one, a driver restored from an older snapshot): the trial's own folder may
    # still hold the checkpoints it wrote, and a finished task is never trained twice.
    own = _own_folder()
    if own is not None and any(own.glob("checkpoint_*")):
        return resume_from(newest_first(own), experiment)
    return None


def _own_folder() -> Path | None:
    """The trial's folder where it is on this machine's disk (local storage), else None."""
    try:
        folder = Path(tune.get_context().get_trial_dir())
    except Exception:  # noqa: BLE001 - outside a Ray Tune trial (tests, plain runs)
        return None
    return folder if folder.is_dir() else None


def newest_first(trial_folder: Path, known: Path | None = None) -> list[Path]:
    """A trial folder's checkpoints, a finished run's first, then the most tasks done first.

    Progress is read from each checkpoint's own record (``trial_files.PROGRESS``), not from file
    times, which a clock set back reorders; modification time only breaks ties (and orders
    checkpoints written before the record existed)."""
    def rank(folder: Path) -> tuple[bool, int, float]:
        files = [f for f in (folder / RESULT_FILE, folder / STATE_FILE) if f.exists()]
        return ((folder / RESULT_FILE).exists(), _tasks_done(folder),
                max((f.stat().st_mtime for f in files), default=-math.inf))

    folders = set(trial_folder.glob("checkpoint_*")) | ({known} if known is not None else set())
    return sorted(folders, key=rank, reverse=True)


def _tasks_done(folder: Path) -> int:
    """A checkpoint's recorded progress; -1 where it has none or it is unreadable."""
    try:
        done = json.loads((folder / trial_files.PROGRESS).read_text())["tasks_done"]
    except (OSError, ValueError, KeyError, TypeError):
        return -1
    return done if isinstance(done, int) else -1


def resume_from(folders: list[Path], experiment: Experiment | StackedExperiment) -> dict[str, Any] | None:
    """Load the first readable of ``folders`` (checkpoints) into ``experiment``; returns the
    run's result if that checkpoint is a finished run's.

    A checkpoint whose files are missing or unreadable (a copy cut short by a killed process)
    is skipped for the next older one; with none left the run starts again from task 1 with
    the same seed, which on CPU ends with the same numbers. (A checkpoint folder that is gone
    altogether is refused by Ray Tune before this runs; runner.KEEP_CHECKPOINTS prevents it.)
    """
    pristine = copy.deepcopy(experiment.state_dict()) if folders else {}
    for folder in folders:
        try:
            if (folder / RESULT_FILE).exists():
                return json.loads((folder / RESULT_FILE).read_text())
            # tensors and plain types only: a checkpoint never unpickles objects (it may come from elsewhere)
            state = torch.load(folder / STATE_FILE, weights_only=True)
            # a state that loads but does not fit (other keys, shapes or types: a file replaced) is
            # skipped like a cut one; what it changed before failing is undone first
            experiment.load_state_dict(state)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError,
                IndexError, AttributeError) as error:
            print(f"spp-sweep: checkpoint {folder} is unusable ({type(error).__name__}: {error})", file=sys.stderr)
            experiment.load_state_dict(copy.deepcopy(pristine))
            continue
        return None
    if folders:
        print("spp-sweep: no usable checkpoint; rerunning this trial from its first task", file=sys.stderr)
    return None


def _final_metrics(result: Mapping[str, Any], metric: str, higher_is_better: bool = True) -> dict[str, Any]:
    """The last report of a trial: every metric, the whole accuracy matrix and the status."""
    values = {k: (math.nan if v is None else v) for k, v in result["metrics"].items()}
    validation = {f"val_{k}": (math.nan if v is None else v) for k, v in result.get("validation_metrics", {}).items()}
    n_rows = len(result["accuracy_matrix"])
    diverged = result["status"] == "diverged"
    score = _score(math.nan if diverged else {**values, **validation}.get(metric, math.nan), higher_is_better)
    if result["status"] == "stopped":  # its metrics are NaN (not the whole stream); the score it was judged on
        score = _partial_score(result["accuracy_matrix"], result["initial_accuracy"], result.get("validation_matrix"),
                               result.get("initial_validation_accuracy"), metric, higher_is_better)
    return {
        "task": n_rows, "n_tasks": len(result["task_names"]), "status": result["status"],
        "running_acc": metrics.running_accuracy(result["accuracy_matrix"][-1], n_rows - 1) if n_rows else math.nan,
        "accuracy_row": result["accuracy_matrix"][-1] if n_rows else [],
        **values, **validation,
        "score": score,
        "diverged_at_task": result["diverged_at_task"], "diverged_reason": result.get("diverged_reason"),
        "accuracy_matrix": result["accuracy_matrix"], "initial_accuracy": result["initial_accuracy"],
        "seconds": result["seconds"], "replayed": False, "stored_examples": result.get("stored_examples", 0),
        **({"validation_matrix": result["validation_matrix"]} if "validation_matrix" in result else {}),
    }


def _score(value: float, higher_is_better: bool = True) -> float:
    """What Ray Tune and Optuna maximise: the metric, or minus it where lower is better."""
    if not math.isfinite(value):
        return DIVERGED_SCORE if higher_is_better else DIVERGED_LOSS_SCORE
    return value if higher_is_better else -value


def _report(run: Experiment | StackedExperiment, members: list[dict[str, Any]],
            results: list[RunResult] | None = None, replayed: bool = False) -> None:
    """tune.report of a trial after a task: a single run's values, or a stack's with every
    member's (``members``) and its best member's score; a checkpoint of the run (with the result
    files when done, trial_files.write_results). A replayed finished trial reports without one."""
    stacked = isinstance(run, StackedExperiment)
    if stacked:
        finished = all(m["status"] in trial_files.ENDED_STATUSES for m in members)
        best = max(members, key=lambda m: m["score"])
        values = {"task": max(m["task"] for m in members), "n_tasks": members[0]["n_tasks"],
                  "status": "finished" if finished else "running", "running_acc": best.get("running_acc", math.nan),
                  "score": best["score"], "members": members, "stack_members": len(members)}
    else:
        values = dict(members[0])
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    where = {"node_id": node, "threads": run.config.threads, "device": run.config.device,
             # how the quadratic penalty acted (explicit / implicit; None for other methods): a
             # study may fix it in a method's options, and every table must still name it
             "penalty_step": run.config.method_options.get("penalty_step"), "output": run.config.output,
             # whether the matrix holds a score to maximise (accuracy) or a loss (objectives.py)
             "higher_is_better": run.objective.higher_is_better, "replayed": replayed}
    if replayed:
        tune.report({**values, **where})
        return
    with tempfile.TemporaryDirectory(prefix="spp-ckpt-") as folder:
        torch.save(run.state_dict(), Path(folder) / STATE_FILE)
        progress = {"tasks_done": sum(int(m["task"]) for m in members)}
        (Path(folder) / trial_files.PROGRESS).write_text(json.dumps(progress))
        if results is not None:
            trial_files.write_results(Path(folder), [r.to_json() for r in results], results, stacked)
        tune.report({**values, **where}, checkpoint=tune.Checkpoint.from_directory(folder))

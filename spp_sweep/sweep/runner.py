"""A validated study -> Ray Tune experiments, run (or resumed) one phase after another.

Phases, each one Ray Tune experiment under ``STORAGE/NAME/``:

* ``grid``: every grid-searched method (sampler ``grid``, or a method with nothing to
  search) as one Tuner over all points x seeds, so a cluster runs them side by side;
* ``optuna``: every method searched by Optuna (TPE or random) in one Tuner, each method with
  its own Optuna study (``optuna-METHOD``) and ``num_samples`` configurations, so every method
  gets the same budget and the phase pays Ray Tune's fixed costs once (optuna_search.py);
* ``final``: each method's best configuration (analysis.tables.best_configs) re-run
  over ``final.seeds``;
* ``evaluate`` (selection protocols first_tasks and transfer only): the same configurations
  over the same seeds on the data they are meant for, the study's benchmark and its whole
  stream. Every phase before it sees only what the protocol allows (``Study.selection_part``).

``--resume`` restores every phase with ``Tuner.restore``: finished trials stay finished,
unfinished ones continue from their last checkpoint (their last finished task).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import trial_files
from ..atomic_files import check_writable_folder
from ..code_version import code_version
from ..errors import ConfigError, UserError
from ..trial_files import Instant
from . import provenance, rungs
from .connection import connect
from .lock import sweep_lock
from .recovery import (
    RAY_STATE_FILES,
    abandon,
    clear_damaged_checkpoints,
    done_trials,
    mend_report_files,
    missing_points,
    recreate_named_checkpoints,
    resumable,
    revive_stacks,
    saved_state,
    set_aside_strays,
    stopped_for_want_of_space,
)
from .stack_plan import optuna_batch, plan_stacks
from .storage import local_folder, read_text, state_files, storage_of, write_text
from .study import MethodSearch, Study, fresh_seeds, name_problem, parse_study, read_yaml
from .trackers import Trackers

STUDY_COPY = trial_files.STUDY
# How often Ray Tune snapshots an experiment's state (TUNE_GLOBAL_CHECKPOINT_S, read when a
# phase starts). The snapshot serialises every trial of the phase (~26 KB each), so taking it
# after every event costs O(trials^2): 414 trials of the main job wrote 10.8 MB after each of
# ~2,500 events and the sweep took 9:15 instead of 3:47 (docs/results/speed.md). Grid phases therefore
# use Ray's own "auto" period (>= 10 s, at most ~5% of the time): a stale snapshot loses nothing
# there: recovery.py runs points without a trial, continues trials started after the snapshot
# (set_aside_strays), gives a checkpoint the snapshot names but Ray deleted an empty placeholder
# (recreate_named_checkpoints), and a trial that finished after the snapshot replays its result
# instead of training again. Optuna phases are small and their searcher state must not go stale,
# so they snapshot after every event.
# A value the user exported wins for both.
_USER_SNAPSHOT_PERIOD = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
GRID_SNAPSHOT_PERIOD, OPTUNA_SNAPSHOT_PERIOD = "auto", "0"
# frequent snapshots are intended
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray Tune deletes a trial's older checkpoints as soon as a new one registers, while the
# experiment snapshot on storage may still name the older one (it is synced asynchronously).
# Keeping two means a driver killed in that window restores from a checkpoint that exists.
KEEP_CHECKPOINTS = 2
MAX_REST_EXPERIMENTS = 3  # follow-up experiments for grid points a killed driver's restore lost


class SweepInterrupted(KeyboardInterrupt):
    """Ray Tune stopped before every trial ended (Ctrl+C); --resume continues."""


@dataclass(frozen=True)
class SweepOptions:
    """Command-line overrides; ``None`` keeps the study file's value."""

    address: str | None = None
    storage: str | None = None
    name: str | None = None
    resume: bool = False
    # --trust-state: resume a folder this account did not start (provenance.py): its Ray state is unpickled
    trust_state: bool = False
    # --allow-code: a study may name benchmark `python` (an entry point that imports and runs code)
    allow_code: bool = False
    max_concurrent: int | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    num_samples: int | None = None
    # when the command began (its first line): compute.csv's start-up row starts there; None: at run_sweep
    started: Instant | None = None
    seeds: int | None = None  # --seeds N: the search runs seeds 0..N-1
    final_seeds: int | None = None  # --final-seeds N: the final phase runs the N smallest seeds the search did not
    stack: str | int | None = None  # --stack auto|off|N: the study's `stack`
    data_root: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()  # --set KEY=VALUE: run settings added to the study's `fixed`
    # --method-option METHOD.KEY=VALUE: a method option added to that method's `options`
    method_options: tuple[tuple[str, Any], ...] = ()
    benchmark_options: tuple[tuple[str, Any], ...] = ()  # --benchmark-option KEY=VALUE
    verbose: int = 1
    trackers: Trackers = Trackers()  # TensorBoard / MLflow / W&B (trackers.py)
    # what each trial runs (None: trainable.train_continual); the tests' trainable injects faults
    trainable: Callable[[dict[str, Any]], None] | None = None


@dataclass
class SweepOutcome:
    root: str
    study: Study
    phases: list[str]


def sweep_root(study: Study) -> str:
    """STORAGE/NAME; a relative local storage path is made absolute (workers need one path)."""
    return f"{storage_of(study.storage).absolute(study.storage).rstrip('/')}/{study.name}"


def prepare_study(study: Study, options: SweepOptions) -> Study:
    """Apply overrides; on --resume, the study saved in the sweep folder is the one that runs."""
    study = study.with_overrides(storage=options.storage, name=options.name)
    wrong = name_problem(study.name)
    if wrong:
        raise ConfigError(f"--name: {wrong}")
    root = sweep_root(study)
    folder = local_folder(root)
    if folder is not None:
        check_writable_folder(folder, "--storage")
    saved = read_text(f"{root}/{STUDY_COPY}")
    if options.resume:
        if saved is None:
            raise ConfigError(f"--resume: no sweep at {root}; run it without --resume first (or fix --storage/--name)")
        provenance.check(root, saved, read_text, options.trust_state)
        study = parse_study(read_yaml(saved), default_name=study.name)
        study = dataclasses.replace(study, storage=root.rsplit("/", 1)[0], name=root.rsplit("/", 1)[1])
    elif saved is not None:
        raise ConfigError(f"a sweep already exists at {root}; pass --resume to continue it, or --name NEW for a "
                          "new one")
    study = study.with_overrides(max_concurrent=options.max_concurrent, gpu=options.gpus_per_trial,
                                 cpu=options.cpus_per_trial, num_samples=options.num_samples, stack=options.stack)
    if options.seeds is not None:
        if study.sampler in ("tpe", "random") and options.seeds > 1:
            raise ConfigError(f"--seeds: with sampler {study.sampler} each suggested configuration runs once; "
                              "repeat the best with --final-seeds N instead")
        seeds = tuple(range(options.seeds))
        again = sorted(set(seeds) & set(study.final_seeds))
        if again and options.final_seeds is None:
            raise ConfigError(f"--seeds {options.seeds}: the final phase's seeds {', '.join(map(str, again))} would "
                              "repeat searched ones (a seed counts once); pass --final-seeds N as well")
        study = study.with_overrides(seeds=seeds)
    if options.final_seeds is not None:
        if not study.final_seeds:
            raise ConfigError("--final-seeds: this study has no final phase; add `final: {seeds: N}` to the file")
        study = study.with_overrides(final_seeds=fresh_seeds(options.final_seeds, study.seeds))
    if options.data_root is not None:
        study = study.with_overrides(data_root=str(Path(options.data_root).expanduser().resolve()))
    if options.benchmark_options:
        study = study.with_overrides(benchmark_options={**study.benchmark_options, **dict(options.benchmark_options)})
    if options.settings:
        study = parse_study({**study.to_dict(), "fixed": {**study.fixed, **dict(options.settings)}},
                            default_name=study.name)
    if options.method_options:
        data = study.to_dict()
        for key, value in options.method_options:
            method, _, option = key.partition(".")
            if method not in data["methods"] or not option:
                raise ConfigError(f"--method-option {key}={value}: write METHOD.OPTION=VALUE with a method of the "
                                  "study "
                                  f"({', '.join(data['methods'])})")
            data["methods"][method]["options"][option] = value
        study = parse_study(data, default_name=study.name)
    code = study.runs_code()
    if code and not options.allow_code:
        raise ConfigError(f"this study runs code: {code}; a study file is data, so spp-sweep runs code from one only "
                          "when you add --allow-code (read the entry point first)")
    for key, value in [("--gpus-per-trial", study.gpu), ("--cpus-per-trial", study.cpu)]:
        if value < 0 or (key == "--cpus-per-trial" and value == 0):
            raise ConfigError(f"{key} {value:g} is invalid; give a positive number")
    if study.max_concurrent is not None and study.max_concurrent < 1:
        raise ConfigError("--max-concurrent must be >= 1")
    if study.num_samples < 1:
        raise ConfigError("--num-samples must be >= 1")
    return study


def check_environment(study: Study, options: SweepOptions) -> None:
    """What the sweep will write outside its folder, checked before Ray starts: a temporary
    folder (Ray's session, checkpoints staged by the trials) and, for a new sweep, this account's
    sweep key (an unusable one would leave a folder that no --resume trusts)."""
    import tempfile

    try:
        temporary = tempfile.gettempdir()
    except FileNotFoundError:
        temporary = None
    if temporary is None or not os.access(temporary, os.W_OK | os.X_OK):
        raise ConfigError(f"no writable temporary folder ({os.environ.get('TMPDIR') or temporary or '/tmp'}); point "
                          "TMPDIR at a writable folder")
    if not options.resume:
        provenance.check_key()


def check_resources(study: Study) -> None:
    """Fail at once where trials could never be placed (instead of leaving them pending)."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    if study.gpu > 0 and gpus == 0:
        raise ConfigError(f"the study asks for {study.gpu:g} GPU per trial but the Ray cluster has no GPU; "
                          "set resources.gpu: 0 (or --gpus-per-trial 0), or join a cluster with GPUs")
    if study.gpu > gpus:
        raise ConfigError(f"the study asks for {study.gpu:g} GPUs per trial but the cluster has {gpus:g}; "
                          "lower resources.gpu (fractions such as 0.25 share one GPU)")
    if study.cpu > cpus:
        raise ConfigError(f"the study asks for {study.cpu:g} CPUs per trial but the cluster has {cpus:g}; "
                          "lower resources.cpu (or --cpus-per-trial)")


def check_data(study: Study) -> None:
    """Build the benchmark once here, so missing data is one line before any trial starts."""
    from ..benchmarks import build_benchmark
    from ..benchmarks.base import with_validation

    evaluated = build_benchmark(study.benchmark, study.benchmark_options)
    fraction = study.fixed.get("validation", 0)
    if fraction:  # a split that leaves a task without training or validation samples: caught here
        with_validation(evaluated, fraction, study.fixed.get("validation_seed", 0))
    if study.protocol == "first_tasks" and study.selection_tasks >= evaluated.n_tasks:
        raise ConfigError(f"selection.tasks={study.selection_tasks} but {study.benchmark} has {evaluated.n_tasks} "
                          f"tasks; tune on fewer (2 to {evaluated.n_tasks - 1}), or use protocol end_of_training")
    if study.protocol == "transfer" and study.tune_on is not None:
        try:
            tuning = build_benchmark(study.tune_on["benchmark"], study.tune_on["benchmark_options"])
        except UserError as error:
            raise type(error)(f"the benchmark to tune on ({study.tune_on['benchmark']}): {error}") from None
        if fraction:
            try:
                with_validation(tuning, fraction, study.fixed.get("validation_seed", 0))
            except UserError as error:
                raise type(error)(f"the benchmark to tune on ({study.tune_on['benchmark']}): {error}") from None
        shape = [[t.n_classes for t in b.tasks] for b in (tuning, evaluated)]
        if shape[0] != shape[1]:
            raise ConfigError(f"transfer needs the same scenario on both benchmarks; {study.tune_on['benchmark']} "
                              f"has {len(shape[0])} tasks of {_classes(shape[0])} classes, {study.benchmark} "
                              f"{len(shape[1])} of {_classes(shape[1])}; set the tuning benchmark's options "
                              "(n_tasks, groups...) to match")


def run_sweep(study: Study, options: SweepOptions = SweepOptions(),
              extra_config: dict[str, Any] | None = None) -> SweepOutcome:
    """Run (or resume) every phase of ``study``; returns where the results are."""
    with _library_output(quiet=options.verbose == 0), sweep_lock(root_of(study, options)):
        return _run_phases(study, options, extra_config)


def root_of(study: Study, options: SweepOptions) -> str:
    """The folder a sweep writes (its name checked first: the lock is made inside it)."""
    study = study.with_overrides(storage=options.storage, name=options.name)
    wrong = name_problem(study.name)
    if wrong:
        raise ConfigError(f"--name: {wrong}")
    return sweep_root(study)


# Loggers whose lines say nothing a sweep's user can act on: Ray's note that token
# authentication is on (quiet only), and the ResultGrid's "Failed to fetch metrics ...
# FileNotFoundError" for trials with no progress file yet, printed on resume and Ctrl+C (always:
# the sweep reads results from the trial folders, never from those dataframes).
_QUIET_ONLY = ("ray._private.authentication.authentication_token_setup",)
_ALWAYS_SILENT = ("ray.tune.analysis.experiment_analysis",)
_SYNC_LOGGERS = ("ray.train._internal.syncer", "ray.tune.execution.experiment_state")


class _SearcherStateRace(logging.Filter):
    """Drops Ray's sync-failure tracebacks ("Last sync command failed", "Saving experiment state
    to storage ... failed") when the file the copy missed is the searcher's temporary state: it
    is written under a temporary name and renamed while the syncer copies the folder, and the
    next sync copies the renamed file. A snapshot left stale by it is what recovery.py's guards
    are for. Every other sync failure still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return "tmp-searcher-state" not in f"{record.getMessage()} {error}"


class _StackMembersValue(logging.Filter):
    """Drops TensorBoard's "invalid value" warning for a stacked trial's ``members`` (a list of
    every member's values, stack_plan.py): it reprints the whole list after every task, while the
    scalars TensorBoard can show are logged as usual."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/members=" not in record.getMessage()


_TENSORBOARD_LOGGER = "ray.tune.logger.tensorboardx"


@contextlib.contextmanager
def _library_output(quiet: bool) -> Iterator[None]:
    """Tune's legacy console reporter for the sweep's duration, and quieter libraries.

    Tune's new console output prints a configuration box for every trial's start and end
    (9,281 lines for the main job); its legacy reporter, chosen by RAY_AIR_NEW_OUTPUT=0, prints
    the compact progress table of :func:`_progress_reporter` at ``verbose=1`` and nothing at
    ``verbose=0``. With --quiet, Ray's and Optuna's INFO lines are left out too.
    """
    import optuna

    race, members = _SearcherStateRace(), _StackMembersValue()
    for name in _SYNC_LOGGERS:
        logging.getLogger(name).addFilter(race)
    logging.getLogger(_TENSORBOARD_LOGGER).addFilter(members)
    names = ("ray", "ray.tune", "ray.train", *_QUIET_ONLY) if quiet else ()
    loggers = [logging.getLogger(name) for name in (*names, *_ALWAYS_SILENT)]
    levels = [logger.level for logger in loggers]
    optuna_level, reporter = optuna.logging.get_verbosity(), os.environ.get("RAY_AIR_NEW_OUTPUT")
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR if logger.name in (*_QUIET_ONLY, *_ALWAYS_SILENT) else logging.WARNING)
        if quiet:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        optuna.logging.set_verbosity(optuna_level)
        for name in _SYNC_LOGGERS:
            logging.getLogger(name).removeFilter(race)
        logging.getLogger(_TENSORBOARD_LOGGER).removeFilter(members)
        if reporter is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = reporter


def _code_history(root: str, options: SweepOptions) -> list[dict[str, Any]]:
    """The code of each start of this sweep (code_version), this one last; a start under the
    same code as the one before it is not repeated."""
    earlier: list[dict[str, Any]] = []
    if options.resume:
        try:
            recorded = json.loads(read_text(f"{root}/{trial_files.PLAN}") or "{}").get("code", [])
        except (ValueError, AttributeError):  # a plan cut short or of another shape: its history is lost
            recorded = []
        earlier = [entry for entry in recorded if isinstance(entry, dict)] if isinstance(recorded, list) else []
    now = code_version()
    return earlier if earlier and earlier[-1] == now else [*earlier, now]


def _run_phases(study: Study, options: SweepOptions, extra_config: dict[str, Any] | None) -> SweepOutcome:
    """run_sweep's body: check, connect, then each phase in order."""
    entered = Instant.now()
    study = prepare_study(study, options)
    check_environment(study, options)
    options.trackers.check()
    if options.address is None:
        check_data(study)
    connect(options.address, quiet=options.verbose == 0)
    check_resources(study)
    root = sweep_root(study)
    if not options.resume:
        text = yaml.safe_dump(study.to_dict(), sort_keys=False)
        write_text(f"{root}/{STUDY_COPY}", text)
        provenance.mark(root, text, write_text)
    # what analysis reads of it, with the code of every start (a --resume may run other code)
    plan = {**study.plan(), "code": _code_history(root, options)}
    write_text(f"{root}/{trial_files.PLAN}", json.dumps(plan, indent=1))
    if options.trackers.tensorboard and options.verbose:
        print(f"TensorBoard: tensorboard --logdir {options.trackers.tensorboard_folder(root, study.name)}  "
              "(one run per configuration; step = task; pip install 'spp-sweep[tensorboard]')", flush=True)
    # the command's own start-up (its imports, checks, Ray's start) from its first line, or from
    # where its caller says this sweep began (recommend runs several): no second twice
    _phase_time(root, trial_files.STARTUP_PHASE, options.started or entered)
    extra = dict(extra_config or {})
    phases: list[str] = []
    searched: list[str] = []  # the search phases' experiments: where the final configurations are chosen
    for phase in sweep_phases(study, root, extra, options):
        if phase.searcher is not None:
            _run_phase(study, root, phase.name, functools.partial(_optuna_space, study, extra), phase.searcher,
                       options, keepers=phase.keepers)
            names = [phase.name]
        else:
            assert phase.points is not None
            names = _run_grid(study, root, phase.name, phase.points(searched), extra, options, phase.part)
        phases += names
        if phase.name in trial_files.SEARCH_PHASES:
            searched += names
    return SweepOutcome(root=root, study=study, phases=phases)


def release_ray(root: str) -> None:
    """End the Ray session this command started, now rather than at the interpreter's exit, and
    record its seconds as the sweep's shut-down span (phase_times.json), so compute.csv adds up."""
    from .connection import disconnect

    started = Instant.now()
    disconnect()
    _phase_time(root, trial_files.SHUTDOWN_PHASE, started)


# -- phases -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One phase of a sweep, as data: its name (``trial_files``), the data its trials see
    (``Study.selection_part`` or ``study_part``), and what it runs: grid points (built when it
    starts, from the search phases run before it: the final phase's are their best
    configurations) or a searcher with its rung keepers."""

    name: str
    part: dict[str, Any]
    points: Callable[[list[str]], list[dict[str, Any]]] | None = None
    searcher: Callable[[], tuple[Any, int]] | None = None
    keepers: list[str] | None = None


def sweep_phases(study: Study, root: str, extra: dict[str, Any], options: SweepOptions) -> list[Phase]:
    """The phases ``study`` runs, in order: the grid search and the Optuna search (each where a
    method is searched so), then the final seeds of each method's best configuration, and their
    evaluation where the study evaluates on other data than it selects on."""
    phases = []
    grid = [m for m in study.methods if not study.searched_by_optuna(m)]
    if grid:
        points = [study.trial_spec(m, p, s) for m in grid for p in m.grid_points() for s in study.seeds]
        phases.append(Phase(trial_files.GRID_PHASE, study.selection_part(), points=lambda searched: points))
    optuna = [m for m in study.methods if study.searched_by_optuna(m)]
    if optuna:
        path = f"{root}/{trial_files.OPTUNA_PHASE}"
        phases.append(Phase(trial_files.OPTUNA_PHASE, study.selection_part(),
                            searcher=_optuna_searcher(study, optuna, path, options.verbose > 0),
                            keepers=[_rungs_path(path, m.method) for m in optuna]))
    if study.final_seeds:
        chosen: list[list[dict[str, Any]]] = []  # read from the search phases once, for final and evaluate

        def final(searched: list[str]) -> list[dict[str, Any]]:
            if not chosen:
                chosen.append(_final_points(study, root, searched))
            return chosen[0]

        phases.append(Phase(trial_files.FINAL_PHASE, study.selection_part(), points=final))
        if study.evaluates_apart:
            phases.append(Phase(trial_files.EVALUATE_PHASE, study.study_part(), points=final))
    return phases


def _run_grid(study: Study, root: str, phase: str, points: list[dict[str, Any]], extra: dict[str, Any],
              options: SweepOptions, part: dict[str, Any]) -> list[str]:
    """A grid phase, then a check that every point has a trial.

    Ray Tune snapshots its state between events; a driver killed in between could restore
    an experiment that never created some trials. Any point without a trial folder runs in
    a follow-up experiment ``PHASE-rest`` (``-rest2``...), so no configuration is ever lost.
    """
    def stacked(left: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Grid points into stacked trials (stack_plan.py), saying how once per phase."""
        plan = plan_stacks(study, left, part, _slots(study))
        if plan.summary and options.verbose:
            print(f"{phase}: {plan.summary}", flush=True)
        return plan.specs

    if local_folder(root) is None:  # object stores: trust Ray Tune's restore (no cheap listing here)
        _run_phase(study, root, phase, lambda: _grid_space(study, stacked(points), extra, part), None, options)
        return [phase]

    def space_left(done: list[str]) -> dict[str, Any] | None:  # built only when the experiment starts anew
        left = missing_points(points, root, done)
        revived, left = revive_stacks(left, root, done)  # stacks moved aside unfinished continue as they were
        return _grid_space(study, revived + resumable(stacked(left), root, done), extra, part)

    names: list[str] = []
    for attempt in range(MAX_REST_EXPERIMENTS + 1):
        name = phase if attempt == 0 else f"{phase}-rest{attempt if attempt > 1 else ''}"
        if attempt > 0 and not Path(root, name).is_dir() and not missing_points(points, root, names):
            break
        done = names + [name]
        _run_phase(study, root, name, functools.partial(space_left, done), None, options)
        names.append(name)
    return names


def _slots(study: Study) -> int:
    """How many trials of this study the cluster runs at once."""
    import ray

    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // study.cpu)) if study.gpu == 0 else \
        max(1, int(ray.cluster_resources().get("GPU", 1) // study.gpu))
    return min(slots, study.max_concurrent or slots)


def concurrency(study: Study, searched: bool) -> int | None:
    """A phase's ``max_concurrent_trials``: the study's own limit for a grid; for a searcher's
    phase the cluster's slots, because without a limit Ray Tune keeps one trial of a custom
    searcher pending at a time, so short trials started one after another on one worker and a
    large cluster filled one actor start-up at a time."""
    return _slots(study) if searched else study.max_concurrent


def _grid_space(study: Study, points: list[dict[str, Any]], extra: dict[str, Any],
                part: dict[str, Any]) -> dict[str, Any] | None:
    """The param space of a grid experiment over ``points`` on ``part``'s data (None: nothing left)."""
    from ray import tune

    if not points:
        return None
    return {"trial": tune.grid_search(points), "study": part, "metric": study.metric, **extra}


def _optuna_space(study: Study, extra: dict[str, Any]) -> dict[str, Any]:
    """The constant part of the Optuna phase's configs; each trial's spec, of whichever method,
    comes whole from the searcher (a constant ``trial`` here would be merged into it)."""
    return {"study": study.selection_part(), "metric": study.metric, **extra}


def _optuna_searcher(study: Study, methods: list[MethodSearch], path: str,
                     verbose: bool = True) -> Callable[[], tuple[Any, int]]:
    """The Optuna phase's searcher (optuna_search.BatchedOptunaSearch: every method in
    ``methods`` with its own study and budget, asked in turn), and how many trials are left.

    Each method's space is handed to the searcher as Optuna distributions (keys
    ``trial/params/NAME``), which keeps it in the searcher's saved state: a restored sweep can
    always suggest again. Configurations already ended in ``path`` (left there when an
    unreadable state was moved aside) are told to their method's study with their scores and
    count against its ``num_samples``.

    On local storage the studies (``optuna-METHOD``) live in ``PHASE/optuna.journal`` (Optuna's
    journal storage, trial_files.OPTUNA_JOURNAL), so ``optuna-dashboard`` and
    ``optuna.visualization`` open the search while it runs and after. A phase that starts anew
    moves an earlier journal aside first: the trials it keeps are told to the new studies again,
    never twice.
    """
    def build() -> tuple[Any, int]:
        import optuna

        from .optuna_search import BatchedOptunaSearch, method_study

        storage = _optuna_storage(path)
        ended = done_trials(path, study.metric)
        searches, trials = [], 0
        for method in methods:
            space = {f"trial/params/{key}": dim.optuna_distribution() for key, dim in method.space.items()}
            done = [e for e in ended if e.method == method.method]
            left = study.num_samples - len(done)
            batch, why = optuna_batch(study, method, study.selection_part(), _slots(study), left, len(methods))
            if why and verbose:
                print(f"optuna-{method.method}: {why}", flush=True)
            sampler: optuna.samplers.BaseSampler
            if study.sampler == "tpe":
                startup = min(10, max(3, study.num_samples // 3))
                # batched: asked but untold configurations count as poor, so one batch spreads out
                sampler = optuna.samplers.TPESampler(seed=study.sampler_seed, n_startup_trials=startup,
                                                     constant_liar=batch > 1)
            else:
                sampler = optuna.samplers.RandomSampler(seed=study.sampler_seed)
            extra = {"rungs": rungs.keeper_name(_rungs_path(path, method.method))} if study.scheduler else {}
            searches.append(method_study(space, sampler, study.trial_spec(method, {}, study.seeds[0]), batch,
                                         study.num_samples, done, study_name=f"optuna-{method.method}",
                                         extra=extra, **storage))
            trials += math.ceil(max(0, left) / batch)
        return BatchedOptunaSearch(searches), trials

    return build


def _rungs_path(phase_path: str, method: str) -> str:
    """Where a method's rung record lives in the Optuna phase: ASHA compares a configuration
    with those of its own method only (rungs.py)."""
    return f"{phase_path}/rungs-{method}"


def _optuna_storage(path: str) -> dict[str, Any]:
    """The studies' ``storage``: a journal file in the phase folder on local storage (an object
    store has no file to append to: there the studies stay in memory)."""
    if local_folder(path) is None:
        return {}
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = Path(path, trial_files.OPTUNA_JOURNAL)
    journal.parent.mkdir(parents=True, exist_ok=True)
    if journal.exists():  # a phase starting anew: its new studies must not load the old ones' trials
        journal.rename(journal.with_name(f"{journal.name}.replaced-{int(time.time())}"))
    return {"storage": JournalStorage(JournalFileBackend(str(journal)))}


def _run_phase(study: Study, root: str, phase: str, space: Callable[[], dict[str, Any] | None],
               searcher: Callable[[], Any] | None, options: SweepOptions, keepers: list[str] | None = None) -> None:
    """Run one Ray Tune experiment, or restore it; ``space``/``searcher`` are built only when
    it starts anew (after an unreadable state is moved aside, for what that state left to do).
    With a scheduler, ``keepers`` are the rung records its trials ask (rungs.py; None: one for
    the whole phase, named in ``space``; a searcher names each trial's own)."""
    from ray import tune

    from .disk_full import DiskFull, DiskFullWatch
    from .trainable import train_continual

    trainable = tune.with_resources(options.trainable or train_continual, {"cpu": study.cpu, "gpu": study.gpu})
    path = f"{root}/{phase}"
    on_disk = local_folder(path)  # None on an object store: no file to mend, no disk to fill
    started = Instant.now()  # the phase's clock, its fixed costs included (compute.csv)
    if on_disk is not None and on_disk.is_dir():  # what a full disk cut, mended before Ray Tune reads it
        mend_report_files(path)
    state = saved_state(path)
    if state == "valid" and on_disk is not None and stopped_for_want_of_space(path):
        # Ray Tune recorded the trials the full disk stopped as ended (disk_full.py stops the
        # whole experiment): continue them from their folders, as for an unreadable state
        abandon(path, "the phase was stopped when its disk filled, or a trial's files were cut short")
        state = "corrupt"
    elif state == "corrupt":
        abandon(path)
    if state == "valid" and not options.trust_state and not provenance.state_signed(path, _state_files(path),
                                                                                     read_text):
        if on_disk is None:
            raise ConfigError(f"--resume: Ray Tune's saved state in {path} is not as this account signed it (a driver "
                              "killed before it signed, or a file replaced); restoring it unpickles it, which can run "
                              "code. Add --trust-state only if you trust every writer of that storage")
        abandon(path, "it is not as this account signed it: a driver killed before signing it, or a file replaced; "
                      "it is not unpickled")
        state = "corrupt"
    if state == "valid":
        if on_disk is not None:
            recreate_named_checkpoints(path)
            clear_damaged_checkpoints(path)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        param_space = space()
        built, num_samples = searcher() if searcher else (None, 1)
        if param_space is None or num_samples < 1:  # nothing left to run
            return
        if study.scheduler and keepers is None:  # early stopping per configuration, stacked or alone (rungs.py)
            param_space = {**param_space, "rungs": rungs.keeper_name(path)}
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="score", mode="max", search_alg=built,
                num_samples=num_samples, max_concurrent_trials=concurrency(study, searched=built is not None),
                reuse_actors=True, trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=phase, storage_path=root, verbose=options.verbose, progress_reporter=_progress_reporter(),
                failure_config=tune.FailureConfig(max_failures=study.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                # a trial failing for want of space stops the phase at once (disk_full.py)
                stop=(watch := DiskFullWatch()),
                callbacks=[*options.trackers.callbacks(study.name, phase, root), watch],
            ),
        )
    if _USER_SNAPSHOT_PERIOD is None:
        os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = GRID_SNAPSHOT_PERIOD if searcher is None else OPTUNA_SNAPSHOT_PERIOD
    started_keepers = [rungs.start_keeper(study.scheduler, _n_tasks(study), keeper)
                       for keeper in (keepers if keepers is not None else [path])] if study.scheduler else []
    try:
        results, interrupted = _fit(tuner)
    finally:
        if started_keepers:
            import ray

            for keeper in started_keepers:
                ray.kill(keeper)
        _phase_time(root, phase, started)
        provenance.sign_state(path, _state_files(path), write_text)  # what a --resume may restore (provenance.py)
    unfinished = len(results) - results.num_terminated - results.num_errors
    if (unfinished or results.num_errors) and on_disk is not None and stopped_for_want_of_space(path):
        raise DiskFull(path)  # one line (spp_sweep/cli); --resume reruns what the full disk stopped
    if interrupted or unfinished > 0:  # Ray Tune stopped on Ctrl+C: do not start the next phase
        raise SweepInterrupted(f"the sweep stopped in phase {phase} before every trial ended; "
                               "continue it with --resume")
    if searcher is None and on_disk is not None:  # grid: trials started after the last snapshot
        set_aside_strays(path, {Path(result.path).name for result in results})


REPORT_EVERY_S = 30  # how often the progress table is printed (Ray's default is every 5 s)


def _progress_reporter() -> Any:
    """Ray Tune's progress as one short table every 30 s: counts by status, the running trials
    and their task and ACC so far, the best one (what to watch, not a log of every trial)."""
    from ray import tune

    class CompactReporter(tune.CLIReporter):
        """Its last table is as short as the others (Ray's lists every trial); the sweep's summary
        follows. No "Current best trial" line: it compares running scores of trials at different
        tasks, and Ray's version raises where the best trial lacks a column (fine-tuning has no λ)."""

        def report(self, trials: Any, done: bool, *sys_info: str) -> None:
            super().report(trials, False, *sys_info)

        def _progress_str(self, *args: Any, **kwargs: Any) -> str:
            # Ray's "Result logdir: .../driver_artifacts" line names a folder of Ray's own, not the sweep's
            text = super()._progress_str(*args, **kwargs)
            return "\n".join(line for line in text.split("\n") if not line.startswith("Result logdir:"))

        def _current_best_trial(self, trials: Any) -> tuple[None, None]:
            return None, None

    # A trial's searched values and seed are in its name (_trial_name; a stack's as ranges
    # and its seeds as a list), so there are no parameter columns: a stack's own would be blank
    # (its values are its members') and show its first member's seed. Its ACC so far is its best member's.
    return CompactReporter(
        parameter_columns={"trial/method": "method"},  # an empty mapping would make Ray show the whole spec
        metric_columns={"task": "task", "running_acc": "ACC so far (stack: best member)"},
        max_progress_rows=8, max_error_rows=5, max_report_frequency=REPORT_EVERY_S, print_intermediate_tables=True,
        max_column_length=36,  # a stack's name and the ACC column's label on one line each
    )


def _interrupt_sentinel(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fit(tuner: Any) -> tuple[Any, bool]:
    """``tuner.fit()``, and whether Ctrl+C stopped it.

    On SIGINT Ray Tune stops gracefully, saves its state and puts back the handler that was
    installed before it ran; a sentinel handler installed here shows that it happened.
    """
    watching = threading.current_thread() is threading.main_thread() and \
        not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    previous = signal.getsignal(signal.SIGINT)
    if watching:
        signal.signal(signal.SIGINT, _interrupt_sentinel)
    try:
        results = tuner.fit()
    finally:
        interrupted = watching and signal.getsignal(signal.SIGINT) is _interrupt_sentinel
        if watching:
            signal.signal(signal.SIGINT, previous)
    return results, interrupted


def _trial_name(trial: Any) -> str:
    """What the progress table shows: ``spp lam=4 seed=1 (00003)``."""
    spec = trial.config.get("trial", {})
    if "members" in spec:  # ``spp penalty_step=implicit lam=0.01..1e+04 seeds=0,1,2: 51 stacked (00003)``
        members = spec["members"]
        seeds = sorted({m["seed"] for m in members})
        return (f"{spec['method']} {_value_ranges(members)}seeds={','.join(map(str, seeds))}: {len(members)} stacked "
                f"({trial.trial_id[-5:]})")
    values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.get("params", {}).items())
    return (f"{spec.get('method', 'trial')} {values + ' ' if values else ''}seed={spec.get('seed', 0)} "
            f"({trial.trial_id[-5:]})")


def _value_ranges(members: list[dict[str, Any]]) -> str:
    """The members' searched values, each as one value, a numeric range or the list of choices."""
    parts = []
    for key in sorted({k for m in members for k in m.get("params", {})}):
        values = list(dict.fromkeys(m["params"][key] for m in members if key in m.get("params", {})))
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        short = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
        if len(values) == 1:
            parts.append(f"{key}={short(values[0])}")
        elif len(numbers) == len(values):
            parts.append(f"{key}={short(min(numbers))}..{short(max(numbers))}")
        else:
            parts.append(f"{key}={'|'.join(map(short, values))}")
    return "".join(f"{part} " for part in parts)


def _trial_dirname(trial: Any) -> str:
    spec = trial.config.get("trial", {})
    if "members" in spec:
        return f"{spec.get('method', 'trial')}_stack{len(spec['members'])}_{trial.trial_id}"
    return f"{spec.get('method', 'trial')}_seed{spec.get('seed', 0)}_{trial.trial_id}"


def _n_tasks(study: Study) -> int:
    """How many tasks a searched trial trains (ASHA's horizon): what selection sees."""
    from ..benchmarks import build_benchmark

    part = study.selection_part()
    return part["fixed"].get("first_tasks") or build_benchmark(part["benchmark"], part["benchmark_options"]).n_tasks


def _classes(shape: list[int]) -> str:
    return str(shape[0]) if len(set(shape)) == 1 else "/".join(map(str, shape))


def _final_points(study: Study, root: str, phases: list[str]) -> list[dict[str, Any]]:
    """Each method's best configuration so far, times the final seeds."""
    import pandas as pd

    from ..results.load import load_trials
    from ..results.tables import best_configs, params_of

    trials = pd.concat([load_trials(f"{root}/{phase}") for phase in phases], ignore_index=True)
    best = best_configs(trials, metric="score")
    points = []
    for method in study.methods:
        row = best[best["method"] == method.method]
        if row.empty:
            raise UserError(f"no finished trial of {method.method} to pick a best configuration from; "
                            "see the errors in the sweep folder, then rerun with --resume")
        point = params_of(row.iloc[0], method.space)
        points += [study.trial_spec(method, point, seed) for seed in study.final_seeds]
    return points


# -- files that may live on a URI (s3://, gs://) or a local path (storage.py) ------------------
def _state_files(path: str) -> dict[str, bytes]:
    """Ray Tune's state files of the experiment folder ``path`` (recovery.RAY_STATE_FILES), by name."""
    return state_files(path, RAY_STATE_FILES)


def _phase_time(root: str, phase: str, started: Instant) -> None:
    """Record ``phase``'s span from ``started`` to now for compute.csv (a local sweep folder only)."""
    folder = local_folder(root)
    if folder is not None:
        trial_files.add_phase_time(folder, phase, *started.span())



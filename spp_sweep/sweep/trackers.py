"""Where researchers already watch sweeps: TensorBoard, MLflow and Weights & Biases.

One tracker run per *configuration* (a method, its searched values, its seed), stacked or not:
a stacked trial of 51 members is 51 runs, each with its own values as parameters. Ray Tune's
own logger callbacks log one run per trial (a stack would be one run holding only its best
member), so the driver-side :class:`ConfigurationTracker` callback does it instead, from the
reports the trials already send (``trainable.py``: a stack reports every member's values):

* parameters: ``method``, ``seed``, ``penalty_step``, the searched values (``lam``, ``lr``...)
  and the method's fixed options as ``option.NAME``; grouped by sweep and phase (MLflow: the
  experiment is the sweep, tags ``phase``/``sweep``; W&B: group ``SWEEP/PHASE``; TensorBoard:
  ``SWEEP_FOLDER/tensorboard/PHASE/RUN``);
* one step per task: ``running_acc`` (and ``val_running_acc``, ``score``, ``seconds``);
* at the end: ACC, BWT, FWT, SMT on test and validation data (``acc``, ``val_acc``...) and
  ``status`` (finished / diverged) as a tag, the run closed as finished (or failed for an
  errored trial).

TensorBoard's client comes with ``pip install 'spp-sweep[tensorboard]'`` (the writer,
tensorboardX, with Ray Tune); MLflow's and W&B's with ``[mlflow]`` / ``[wandb]``. A missing
client, an MLflow URI that cannot work or a server that does not answer is one line before
any trial. W&B honours ``WANDB_MODE=offline`` (runs kept on disk, ``wandb sync`` later).
A tracker that fails during the sweep is reported once on stderr and left off; the sweep and
its result files go on. The callback is saved with the experiment Ray Tune saves, so a resumed
sweep keeps its trackers and continues each configuration's run (same MLflow run by tag, same
W&B run id, same TensorBoard folder), and no step is logged twice.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ray.tune import Callback

from .. import metrics, trial_files
from ..errors import ConfigError
from .storage import local_folder

# Report fields that are lists or bookkeeping, not metrics to chart.
NOT_METRICS = ("accuracy_matrix", "accuracy_row", "initial_accuracy", "validation_matrix", "validation_row",
               "node_id", "device", "threads", "replayed", "status", "penalty_step", "diverged_at_task",
               "task", "n_tasks", "higher_is_better", "stack_members", "members", "diverged_reason", "output")
ENDED = trial_files.ENDED_STATUSES
RUNNING_ONLY = ("running_acc", "val_running_acc", "seconds")  # logged at every task, not again at a run's end


@dataclass(frozen=True)
class Trackers:
    """Which trackers a sweep logs to (all off by default)."""

    tensorboard: bool = False
    mlflow: str | None = None  # tracking URI: sqlite:///path/mlflow.db, http://host:5000, databricks ...
    wandb: str | None = None  # project name
    quiet: bool = False  # --quiet: the trackers' clients print nothing either (W&B's banners, per run)

    def check(self) -> None:
        """The clients each asked-for tracker needs are importable (else one line naming the extra)."""
        for wanted, module, extra in [(self.tensorboard, "tensorboardX", "ray[tune]"),
                                      (self.mlflow, "mlflow", "spp-sweep[mlflow]"),
                                      (self.wandb, "wandb", "spp-sweep[wandb]")]:
            if not wanted:
                continue
            try:
                __import__(module)
            except ImportError:
                raise ConfigError(f"the {module} client is not installed; pip install '{extra}'") from None
        if self.mlflow:  # an unreachable or refused store: one line now, not a traceback in every trial
            import mlflow

            _check_mlflow_uri(self.mlflow)
            try:
                mlflow.MlflowClient(tracking_uri=self.mlflow).search_experiments(max_results=1)
            except Exception as error:  # MlflowException, connection errors, a bad URI scheme...
                reason = " ".join(str(error).split())[:300]
                raise ConfigError(f"--mlflow {self.mlflow} cannot be used ({reason}); for a local store give "
                                  "sqlite:///PATH/mlflow.db") from None

    def tensorboard_folder(self, root: str, sweep: str) -> Path:
        """Where the TensorBoard runs go: the sweep folder, or ./tensorboard/SWEEP for a URI storage."""
        folder = local_folder(root)
        return Path("tensorboard", sweep) if folder is None else folder / "tensorboard"

    def callbacks(self, sweep: str, phase: str, root: str) -> list[Callback]:
        """Ray Tune callbacks for one phase: the per-configuration tracker, if any tracker is on."""
        if not (self.tensorboard or self.mlflow or self.wandb):
            return []
        return [ConfigurationTracker(self, sweep, phase, str(self.tensorboard_folder(root, sweep)), root)]


@dataclass(frozen=True)
class Configuration:
    """One configuration of a trial (the trial itself, or one member of a stack)."""

    key: str  # unique within the sweep and stable across restores: PHASE/TRIAL_ID[/mK]
    name: str  # what a person reads: ``spp implicit lam=4 seed=1``
    method: str
    params: dict[str, Any]


def configurations(phase: str, trial_id: str, spec: Mapping[str, Any],
                   result: Mapping[str, Any]) -> Iterator[tuple[Configuration, Mapping[str, Any]]]:
    """Each configuration of a trial's report with its own values (a stack's members one by one)."""
    members = spec.get("members")
    if not members:
        yield _configuration(f"{phase}/{trial_id}", spec, result), result
        return
    for k, (member, values) in enumerate(zip(members, result.get("members", []))):
        config = _configuration(f"{phase}/{trial_id}/m{k}", member, {"penalty_step": result.get("penalty_step")})
        yield config, values


def _configuration(key: str, spec: Mapping[str, Any], result: Mapping[str, Any]) -> Configuration:
    step = result.get("penalty_step") or spec.get("options", {}).get("penalty_step")
    searched = dict(spec.get("params", {}))
    params: dict[str, Any] = {"method": spec.get("method", "trial"), "seed": int(spec.get("seed", 0)),
                              "penalty_step": step or "none", **searched,
                              **{f"option.{k}": v for k, v in spec.get("options", {}).items() if k not in searched}}
    values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in searched.items())
    name = " ".join(part for part in (params["method"], step, values, f"seed={params['seed']}") if part)
    return Configuration(key, name, params["method"], params)


def step_values(values: Mapping[str, Any]) -> dict[str, float]:
    """A report's numbers to chart: every finite scalar but the bookkeeping, plus the running
    validation ACC where the report has a validation row."""
    found = {k: float(v) for k, v in values.items()
             if k not in NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    row, task = values.get("validation_row") or (values.get("validation_matrix") or [None])[-1], values.get("task")
    if row and task:
        found["val_running_acc"] = metrics.running_accuracy(row, int(task) - 1)
    return found


def _rows_between(values: Mapping[str, Any], last: int, step: int) -> Iterator[tuple[int, dict[str, float]]]:
    """The running values of the tasks after ``last`` and before ``step``, from the matrix rows a
    report carries (a final report; a restarted trial's first one): a task whose report was lost
    when the driver stopped is logged from its row, in order."""
    matrix, validation = values.get("accuracy_matrix") or [], values.get("validation_matrix") or []
    for task in range(last + 1, min(step, len(matrix) + 1)):
        found = {"running_acc": metrics.running_accuracy(matrix[task - 1], task - 1)}
        if len(validation) >= task:
            found["val_running_acc"] = metrics.running_accuracy(validation[task - 1], task - 1)
        yield task, found


class Sink(Protocol):
    """One tracker: a run per configuration, opened, logged once per task, closed."""

    label: str

    def open(self, config: Configuration, sweep: str, phase: str) -> None: ...

    def log(self, key: str, values: dict[str, float], step: int) -> None: ...

    def close(self, key: str, status: str) -> None: ...


@dataclass
class TensorBoardSink:
    """A tensorboardX writer per configuration, its parameters in the HParams dashboard."""

    folder: Path
    label: str = "TensorBoard"
    writers: dict[str, Any] = field(default_factory=dict)

    def open(self, config: Configuration, sweep: str, phase: str) -> None:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        run = re.sub(r"[^A-Za-z0-9=.,+-]+", "_", config.name) + "_" + config.key.split("/", 1)[1].replace("/", "_")
        writer = SummaryWriter(logdir=str(self.folder / phase / run), flush_secs=10)
        values = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in config.params.items()}
        experiment, start, end = hparams(values, {m: 0.0 for m in FINAL_METRICS})
        for summary in (experiment, start):  # the HParams plugin reads them from the run's own events
            writer._get_file_writer().add_summary(summary)
        self.writers[config.key] = (writer, end)

    def log(self, key: str, values: dict[str, float], step: int) -> None:
        writer = self.writers[key][0]
        for name, value in values.items():
            writer.add_scalar(name, value, step)

    def close(self, key: str, status: str) -> None:
        writer, end = self.writers.pop(key, (None, None))
        if writer is not None:
            writer.add_text("status", status)
            writer._get_file_writer().add_summary(end)
            writer.close()


FINAL_METRICS = ("acc", "bwt", "fwt", "smt", "val_acc", "val_bwt", "val_fwt", "running_acc")


@dataclass
class MlflowSink:
    """MLflow runs through its client; a resumed sweep finds a configuration's run by its tag."""

    uri: str
    label: str = "MLflow"
    client: Any = None
    experiment_id: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # configuration key -> run id
    known: dict[str, str] | None = None

    def open(self, config: Configuration, sweep: str, phase: str) -> None:
        from mlflow.entities import Param

        if self.client is None:
            import mlflow

            self.client = mlflow.MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(sweep)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(sweep)
        if self.known is None:  # runs an earlier driver of this sweep made (a resumed sweep)
            runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.phase = '{phase}'",
                                           max_results=50000)
            self.known = {r.data.tags["spp_sweep.configuration"]: r.info.run_id for r in runs
                          if "spp_sweep.configuration" in r.data.tags}
        if config.key in self.known:
            self.runs[config.key] = self.known[config.key]
            return
        run = self.client.create_run(self.experiment_id, run_name=config.name,
                                     tags={"phase": phase, "sweep": sweep, "method": config.method,
                                           "spp_sweep.configuration": config.key})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in config.params.items()])
        self.runs[config.key] = run.info.run_id

    def log(self, key: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.runs[key], metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def close(self, key: str, status: str) -> None:
        run = self.runs.pop(key, None)
        if run is not None:
            self.client.set_tag(run, "status", status)
            self.client.set_terminated(run, {"error": "FAILED", "unfinished": "KILLED"}.get(status, "FINISHED"))


@dataclass
class WandbSink:
    """A W&B run per configuration in the driver (``reinit="create_new"``: several open at once)."""

    project: str
    seed: str  # makes run ids unique to this sweep folder
    quiet: bool = False  # W&B's own lines (a banner and a summary per run) left out
    label: str = "W&B"
    runs: dict[str, Any] = field(default_factory=dict)

    def open(self, config: Configuration, sweep: str, phase: str) -> None:
        import wandb

        run_id = hashlib.sha1(f"{self.seed}/{config.key}".encode()).hexdigest()[:16]
        self.runs[config.key] = wandb.init(project=self.project, group=f"{sweep}/{phase}", job_type=phase,
                                           name=config.name, id=run_id, config=config.params,
                                           tags=[phase, config.method], reinit="create_new", resume="allow",
                                           settings=wandb.Settings(silent=True) if self.quiet else None)

    def log(self, key: str, values: dict[str, float], step: int) -> None:
        self.runs[key].log(values, step=step)

    def close(self, key: str, status: str) -> None:
        run = self.runs.pop(key, None)
        if run is not None:
            run.summary["status"] = status
            run.finish(exit_code=0 if status in ENDED else 1)


class ConfigurationTracker(Callback):
    """Ray Tune callback (on the driver): one tracker run per configuration of every trial.

    The trackers' calls run in order on one background thread (``background``), so that a slow
    store (MLflow's sqlite commits each call: about 40 ms per configuration) does not hold up the
    driver's loop that schedules trials; the phase's end, and the process's exit, wait for them.
    Picklable (Ray Tune saves it in the experiment): the clients are made anew after a restore.
    """

    def __init__(self, trackers: Trackers, sweep: str, phase: str, tensorboard: str, root: str,
                 background: bool = True) -> None:
        self.trackers, self.sweep, self.phase = trackers, sweep, phase
        self.tensorboard, self.root, self.background = tensorboard, root, background
        self._sinks: list[Sink] | None = None
        self._open: set[str] = set()  # configuration keys whose runs this process opened
        self._last: dict[str, int] = {}  # configuration key -> last step logged
        self._ended: set[str] = set()  # configurations whose runs were closed as finished or diverged
        self._calls: queue.Queue[tuple[str, tuple[Any, ...]]] | None = None  # for the background thread

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sinks": None, "_open": set(), "_calls": None}

    def flush(self) -> None:
        """Wait until every call handed to the background thread has run."""
        if self._calls is not None:
            self._calls.join()

    def get_state(self) -> dict[str, Any]:
        """Saved by Ray Tune with each experiment snapshot: a restored sweep neither logs a step
        again (a task retrained after a restart) nor reopens a run it closed."""
        return {"last": dict(self._last), "ended": sorted(self._ended)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._last, self._ended = dict(state["last"]), set(state["ended"])

    def sinks(self) -> list[Sink]:
        if self._sinks is None:
            made: list[Sink] = []
            if self.trackers.tensorboard:
                made.append(TensorBoardSink(Path(self.tensorboard)))
            if self.trackers.mlflow:
                made.append(MlflowSink(self.trackers.mlflow))
            if self.trackers.wandb:
                made.append(WandbSink(self.trackers.wandb, seed=self.root, quiet=self.trackers.quiet))
            self._sinks = made
        return self._sinks

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        # A trial that finished before a driver restart reports its final values again ("replayed"):
        # logged if this tracker never saw its end (the driver stopped first), else skipped by key.
        for config, values in configurations(self.phase, trial.trial_id, trial.config.get("trial", {}), result):
            self.record(config, values)

    def record(self, config: Configuration, values: Mapping[str, Any]) -> None:
        """Log one configuration's report; a value already logged (a stack's ended member, which
        repeats its final values at every later report) is not logged twice."""
        step, ended = int(values.get("task", 0)), values.get("status") in ENDED
        last = self._last.get(config.key, 0)
        if config.key in self._ended or (step <= last and not ended):
            return
        if config.key not in self._open:  # new, or continued after a restart (the same run, by key)
            self._each("open", config, self.sweep, self.phase)
            self._open.add(config.key)
        for missed, values_then in _rows_between(values, last, step):  # reports the driver never received
            self._each("log", config.key, values_then, missed)
        numbers = step_values(values)
        if step <= last:  # a member that diverged in a task ends at its last finished task, logged already
            numbers = {k: v for k, v in numbers.items() if k not in RUNNING_ONLY}
        self._last[config.key] = max(step, last)
        self._each("log", config.key, numbers, step)
        if ended:
            self._end(config.key, str(values["status"]))

    def _end(self, key: str, status: str) -> None:
        if status in ENDED:
            self._ended.add(key)
        self._open.discard(key)
        self._each("close", key, status)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close_trial(trial, "finished")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close_trial(trial, "error")

    def _close_trial(self, trial: Any, status: str) -> None:
        for key in [k for k in self._open if k.split("/")[1] == trial.trial_id]:
            self._end(key, status)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for key in list(self._open):  # an interrupted phase: --resume continues these runs
            self._end(key, "unfinished")
        self.flush()

    def _each(self, action: str, *args: Any) -> None:
        """Call ``action`` (open, log, close) on every sink, on the background thread where there is one."""
        if not self.background:
            self._call(action, args)
            return
        if self._calls is None:
            self._calls = queue.Queue()
            threading.Thread(target=self._drain, name="spp-sweep-trackers", daemon=True).start()
            atexit.register(self.flush)  # a daemon thread is stopped at exit: finish its calls first
        self._calls.put((action, args))

    def _drain(self) -> None:
        assert self._calls is not None
        while True:
            action, args = self._calls.get()
            try:
                self._call(action, args)
            finally:
                self._calls.task_done()

    def _call(self, action: str, args: tuple[Any, ...]) -> None:
        """One call on every sink; a sink that fails is reported once and left off."""
        for sink in list(self.sinks()):
            try:
                getattr(sink, action)(*args)
            except Exception as error:  # noqa: BLE001 - a tracker's failure must not end the sweep
                reason = " ".join(str(error).split())[:200]
                print(f"spp-sweep: {sink.label} logging failed ({type(error).__name__}: {reason}); left off for the "
                      "rest of this phase, the sweep and its result files go on", file=sys.stderr)
                self.sinks().remove(sink)


REACH_TIMEOUT_S = 3.0  # how long --mlflow http://HOST:PORT may take to accept a connection


def _check_mlflow_uri(uri: str) -> None:
    """What MLflow's client would only find out after minutes of retries (about 250 s for a
    server that does not answer), said in one line within seconds: the URI schemes that work
    (sqlite:///PATH, http(s)://HOST:PORT, databricks; MLflow 3 refuses file:// and plain paths
    as tracking stores) and whether an http server accepts connections at all."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        raise ConfigError(f"--mlflow {uri}: MLflow 3 no longer takes a folder as its tracking store; give "
                          "sqlite:///PATH/mlflow.db (a local file) or http://HOST:PORT (a tracking server)")
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=REACH_TIMEOUT_S).close()
        except OSError as error:
            raise ConfigError(f"--mlflow {uri}: no tracking server answers at {parsed.hostname}:{port} "
                              f"({error}); start it (mlflow server --port {port}) or fix the URI") from None

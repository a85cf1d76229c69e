"""The files of a run's folder (``spp-sweep run --out``), of a sweep trial's checkpoint, and the
sweep's plan (``plan.json``).

This module owns their names and the format of their arrays, so the writers (``cli.run``,
``sweep/trainable``) and the reader (``analysis/load``) cannot disagree. Arrays are NumPy
``.npz`` files of plain arrays, one key per task and tensor (``task0/trunk.0.weight``), read with
``allow_pickle=False``: a folder from elsewhere cannot run code. NumPy and the standard library
only, so the analysis layer imports it without the engine.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .atomic_files import atomic_write

RESULT = "result.json"  # RunResult.to_json(): config, status, matrices, metrics
ACCURACY_CSV = "accuracy_matrix.csv"  # `run` only: the test matrix for pandas
IMPORTANCES = "importances.npz"  # save_importances: task{t}/NAME, each method's own importance
PICTURES = "pictures.npz"  # a VAE's task{t}/originals|reconstructions|samples|task1_samples (Figure 5)
PARAMETERS = "parameters.npz"  # save_parameters: task{t}/NAME parameters, importance{t}/NAME SPP's probe
STATE = "state.pt"  # a trial checkpoint's Experiment.state_dict() (tensors and plain values only)
PROGRESS = "progress.json"  # beside STATE: {"tasks_done": N}, summed over a stack's members
PARAMS = "params.json"  # Ray Tune's own: the trial's configuration
ERROR = "error.txt"  # Ray Tune's own: why a trial raised, one "Failure # N" block per failure
# A sweep's root: what analysis needs of its study without parsing the study file (Study.plan):
# {"planned_trials": N, "metric": "val_acc", "spaces": {method: {name: Optuna distribution JSON}}}
PLAN = "plan.json"
STUDY = "study.yaml"  # a sweep's root: the study as it was started (--resume reuses it)
# A sweep's root: per phase, the driver's clock around each Ray Tune experiment it ran for it (a
# resumed phase adds a span): {phase: [[started, ended], ...]} in seconds since the epoch, where
# ended is started plus the seconds the monotonic clock counted (Instant.span).
PHASE_TIMES = "phase_times.json"
# its span for what each sweep command spent before its first phase: the interpreter, imports,
# checks and Ray's start (one span per command, so a resumed sweep adds its own)
STARTUP_PHASE = "start-up"
# its span for ending the Ray session the command started (after its last phase, before its
# report), which would otherwise fall outside every clock at the interpreter's exit
SHUTDOWN_PHASE = "shut-down"
# A phase folder under an early-stopping scheduler (sweep/rungs.py): every value each rung has
# recorded, in arrival order, and every decision made: {"rungs": [[milestone, [[key, value], ...]],
# ...], "decisions": [[key, task, stop], ...]}; a resumed phase continues from it.
RUNGS = "rungs.json"
# How a run's report may end: it trained every task, its loss blew up, or a scheduler stopped it.
ENDED_STATUSES = ("finished", "diverged", "stopped")
# A sweep's phases, each a folder of its root and the ``phase`` column of its trials (sweep/runner.py
# declares what each runs): the search over a grid, or by Optuna (every method it searches); then each
# method's selected configuration over new seeds, and where selection and evaluation data differ,
# the same configurations on the evaluation data. A grid phase whose points lost their trials
# continues in PHASE-rest, -rest2... (the same phase).
GRID_PHASE = "grid"
OPTUNA_PHASE = "optuna"
FINAL_PHASE = "final"
EVALUATE_PHASE = "evaluate"
SEARCH_PHASES = (GRID_PHASE, OPTUNA_PHASE)  # the phases whose results choose the final configurations
SELECTED_PHASES = (FINAL_PHASE, EVALUATE_PHASE)  # the phases of the configurations chosen
OPTUNA_JOURNAL = "optuna.journal"  # there: each method's Optuna study, optuna-METHOD (optuna-dashboard)


class _Tensor(Protocol):
    def numpy(self) -> np.ndarray: ...


class ArrayRecord(Protocol):
    """What the arrays are taken from: an ``engine.RunResult``."""

    @property
    def importances(self) -> Sequence[Mapping[str, _Tensor]]: ...
    @property
    def pictures(self) -> Sequence[Mapping[str, _Tensor]]: ...
    @property
    def parameters(self) -> Sequence[Mapping[str, _Tensor]]: ...
    @property
    def probe_importances(self) -> Sequence[Mapping[str, _Tensor]]: ...


def _flat(**series: Sequence[Mapping[str, _Tensor]]) -> dict[str, np.ndarray]:
    return {f"{kind}{t}/{name}": tensor.numpy() for kind, per_task_list in series.items()
            for t, per_task in enumerate(per_task_list) for name, tensor in per_task.items()}


def arrays_of(result: ArrayRecord) -> dict[str, dict[str, np.ndarray]]:
    """File name -> its arrays, for the files this run has anything to put in."""
    files = {IMPORTANCES: _flat(task=result.importances), PICTURES: _flat(task=result.pictures),
             PARAMETERS: _flat(task=result.parameters, importance=result.probe_importances)}
    return {name: arrays for name, arrays in files.items() if arrays}


def write_arrays(folder: Path, result: ArrayRecord) -> list[Path]:
    """Write the run's array files into ``folder``, each whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arrays in arrays_of(result).items():
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        atomic_write(folder / name, buffer.getvalue())
        written.append(folder / name)
    return written


def member_folder(folder: Path, k: int) -> Path:
    """Where member ``k`` of a stacked trial keeps its arrays inside the trial's checkpoint."""
    return Path(folder) / f"member{k}"


def write_results(folder: Path, results: Sequence[Mapping[str, Any]], arrays: Sequence[ArrayRecord],
                  stacked: bool) -> None:
    """A finished trial's files in its last checkpoint: ``result.json`` (one run's
    ``RunResult.to_json()``, or a stack's ``{"members": [...]}``) and each run's arrays (at the
    top, or in :func:`member_folder`). The readers: ``analysis/load``, ``sweep/trainable``'s resume."""
    folder = Path(folder)
    document = {"members": list(results)} if stacked else results[0]
    atomic_write(folder / RESULT, json.dumps(document, indent=None if stacked else 1).encode())
    for k, record in enumerate(arrays):
        write_arrays(member_folder(folder, k) if stacked else folder, record)


# The most a reader takes of each file (a tampered folder may hold a 1.5 GB result.json, or one
# linked to /dev/zero): what a real sweep writes stays far below.
SMALL_FILE = 4 * 2**20  # params.json, plan.json, phase_times.json, rungs.json, error.txt, study.yaml
REPORTS_FILE = 256 * 2**20  # a trial's result.json (one line per task; a stack's lines carry every member)
ARRAYS_FILE = 2 * 2**30  # an .npz of importances or parameters, per member


def read_text(path: Path, limit: int = SMALL_FILE) -> str | None:
    """A file of a sweep or run folder as text: None where it does not exist. A file that is not a
    regular file (a device, a FIFO, a link to one) or longer than ``limit`` raises ValueError before
    a byte is read; undecodable bytes are replaced (their JSON lines then fail to parse)."""
    import os
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > limit:
        raise ValueError(f"{path} is {info.st_size:,} bytes, more than the {limit:,} such a file may hold")
    with open(path, "rb") as file:
        return file.read(limit + 1)[:limit].decode("utf-8", errors="replace")


def _read_json(path: Path) -> Any:
    """A small JSON file, or None where it is missing, too long, not a file or not JSON."""
    try:
        text = read_text(path)
        return None if text is None else json.loads(text)
    except (OSError, ValueError, RecursionError):
        return None


def read_arrays(path: Path) -> dict[str, Any]:
    """The arrays of one ``.npz`` file, never unpickling (an object array is refused), and never
    allocating more than a member's header can back: a header claiming more values than its
    member's bytes hold is refused before NumPy allocates them."""
    import stat
    import zipfile

    if not stat.S_ISREG(Path(path).stat().st_mode) or Path(path).stat().st_size > ARRAYS_FILE:
        raise ValueError(f"{path} is not a regular file of at most {ARRAYS_FILE:,} bytes")
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0  # version 3's header reads as 2's (utf-8 names)
                shape, _, dtype = read_header(member)  # the header only
                claimed = int(np.prod(shape, dtype=np.float64)) * max(1, dtype.itemsize)
                if claimed > info.file_size:
                    raise ValueError(f"{path}: {info.filename} claims {claimed:,} bytes and holds {info.file_size:,}")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_plan(root: Path) -> dict[str, Any] | None:
    """A sweep's ``plan.json``, or None where there is none (a phase folder, a sweep started
    before plans were written) or it does not read as one (wrong types included)."""
    plan = _read_json(Path(root) / PLAN)
    if not (isinstance(plan, dict) and {"planned_trials", "metric", "spaces"} <= set(plan)):
        return None
    typed = isinstance(plan["metric"], str) and isinstance(plan["spaces"], dict) and isinstance(
        plan["planned_trials"], int) and all(isinstance(space, dict) for space in plan["spaces"].values())
    return plan if typed else None


def read_phase_times(root: Path) -> dict[str, list[list[float]]]:
    """A sweep's phase_times.json ({} where there is none or it does not read as spans)."""
    times = _read_json(Path(root) / PHASE_TIMES)
    if not isinstance(times, dict):
        return {}
    return {str(phase): [[float(a), float(b)] for a, b in spans] for phase, spans in times.items()
            if isinstance(spans, list) and all(isinstance(span, list) and len(span) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in span) for span in spans)}


@dataclass(frozen=True)
class Instant:
    """When a span of phase_times.json began: the wall clock, to place it, and the monotonic
    clock, to measure it, so that a clock set back or forward meanwhile changes no duration."""

    wall: float
    monotonic: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.time(), time.monotonic())

    def span(self) -> tuple[float, float]:
        """From this instant to now: (its wall time, that plus the monotonic seconds since)."""
        return self.wall, self.wall + max(0.0, time.monotonic() - self.monotonic)


def add_phase_time(root: Path, phase: str, started: float, ended: float) -> None:
    """Add one span of the driver's clock to a phase (written whole or not at all)."""
    times = read_phase_times(root)
    times.setdefault(phase, []).append([started, ended])
    atomic_write(Path(root) / PHASE_TIMES, json.dumps(times, indent=1).encode())


def read_rungs(folder: Path) -> dict[str, Any] | None:
    """A phase's rungs.json, or None where there is none or it does not read (a new record starts)."""
    saved = _read_json(Path(folder) / RUNGS)
    return saved if isinstance(saved, dict) and {"rungs", "decisions"} <= set(saved) else None


def write_rungs(folder: Path, saved: Mapping[str, Any]) -> None:
    """Write a phase's rungs.json whole or not at all."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(folder) / RUNGS, json.dumps(saved).encode())

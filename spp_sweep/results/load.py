"""A sweep folder -> pandas: one row per trial, and a long table of accuracy matrices.

Reads only the files a sweep leaves behind: Ray Tune's ``params.json`` and ``result.json``
(one JSON line per report) in each trial folder, ``error.txt`` where a trial raised, and the
last checkpoint's ``result.json``/``importances.npz``. It never imports the engine, so it
works on any machine with pandas, on sweeps still running or interrupted (it uses what has
been written so far).

Why not Ray Tune's own readers (``ExperimentAnalysis``, ``ResultGrid``): they decode the
experiment state, whose trial entries may hold cloudpickled objects (Ray's JSON decoder unpickles
them), so opening a sweep folder someone hands you could run code; they need Ray (a report
should need pandas only, and importing Ray costs seconds); and they show a stacked trial as one
row with a list of members, where every table here needs one row per configuration. What they
would add, reading each trial's ``result.json`` lines, is what this module does with ``json``.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .. import trial_files

METRIC_COLUMNS = ["acc", "bwt", "fwt", "fwt_paper", "smt"]
# the same on the validation split, for sweeps that select on it (NaN where none was held out)
VALIDATION_COLUMNS = ["val_acc", "val_bwt", "val_fwt", "val_smt"]
# status: finished | diverged (loss NaN/inf; metrics NaN) | stopped (early, by the ASHA scheduler
#         after `tasks_done` tasks: spp_sweep/sweep/rungs.py; metrics NaN) | errored (raised; see
#         error.txt) | incomplete (still running, or interrupted)
STATUSES = ("finished", "diverged", "stopped", "errored", "incomplete")


def trial_folders(root: str | Path) -> Iterator[Path]:
    """Every Ray Tune trial folder (one holding params.json) under ``root``, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    yield from sorted(p.parent for p in root.rglob(trial_files.PARAMS) if "checkpoint_" not in p.parent.name
                      and not any(part.startswith(".") for part in p.relative_to(root).parts))  # .abandoned-N


def read_reports(folder: Path) -> list[dict[str, Any]]:
    """The trial's reports in order; a half-written last line (a killed writer) is skipped."""
    # damaged bytes: their lines are skipped; a file too long or not a file raises (a damaged trial)
    text = trial_files.read_text(folder / trial_files.RESULT, trial_files.REPORTS_FILE)
    reports = []
    for line in (text or "").splitlines():
        try:
            report = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports


def read_final_reports(folder: Path) -> list[dict[str, Any]]:
    """``read_reports``, with the final report rebuilt from the last checkpoint where the report
    file lost it (see ``final_from_checkpoint``): what "has this trial ended?" must read."""
    reports = read_reports(folder)
    if not reports or reports[-1].get("status") not in trial_files.ENDED_STATUSES:
        recovered = final_from_checkpoint(folder, reports)
        if recovered is not None:
            reports.append(recovered)
    return reports


def last_checkpoint(folder: Path) -> Path | None:
    checkpoints = sorted(folder.glob("checkpoint_*"))
    return checkpoints[-1] if checkpoints else None


def load_trials(root: str | Path) -> pd.DataFrame:
    """One row per trial: phase, method, seed, every searched value, status, metrics, seconds.

    Searched values appear as their own columns (``lam``, ``lr``, ...); ``searched`` lists
    which columns a trial searched, so tables can group by configuration, and ``config`` spells
    them out (``lam=4, lr=0.1``) for a reader of trials.csv. ``penalty_step``
    says how a quadratic penalty acted (explicit / implicit), searched or not.
    """
    root = Path(root)
    rows, damaged = [], []
    for folder in trial_folders(root):
        try:
            rows += _trial_rows(root, folder)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError,
                RecursionError) as error:  # a cut, foreign or tampered trial folder
            damaged.append(f"{folder}: {type(error).__name__}: {' '.join(str(error).split())[:200]}")
            print(f"spp-sweep: skipping the damaged trial {damaged[-1]}", file=sys.stderr)
    frame = pd.DataFrame(rows)
    frame.attrs["damaged"] = damaged  # the report lists them
    if frame.empty:
        return pd.DataFrame(columns=["phase", "trial_id", "method", "seed", "status", *METRIC_COLUMNS,
                                     *VALIDATION_COLUMNS])
    return frame


def _trial_rows(root: Path, folder: Path) -> list[dict[str, Any]]:
    """A trial folder's rows: one, or one per member of a stacked trial (spp_sweep/sweep/stack_plan.py),
    each as if that configuration had run alone (``stack`` names the trial it shared)."""
    config = json.loads(trial_files.read_text(folder / trial_files.PARAMS) or "")
    trial = config.get("trial", {})
    reports = read_final_reports(folder)
    last = reports[-1] if reports else {}
    if "members" not in trial:
        return [_trial_row(root, folder, config, trial, _checked(last))]
    trial_id = last.get("trial_id", folder.name)
    reported = last.get("members") or [{}] * len(trial["members"])
    if not isinstance(reported, list) or len(reported) != len(trial["members"]):
        raise ValueError(f"the stack's report holds {len(reported) if isinstance(reported, list) else 'no'} "
                         f"members and its params.json {len(trial['members'])}")
    rows = []
    for k, member in enumerate(trial["members"]):
        values = _checked(reported[k])
        shared: dict[str, Any] = {key: last[key] for key in ("timestamp", "node_id", "threads", "device", "output",
                                            "higher_is_better", "penalty_step") if key in last}
        if "time_total_s" in last:  # each member's share, so sums over rows are the compute spent
            shared["time_total_s"] = last["time_total_s"] / len(trial["members"])
        row = _trial_row(root, folder, config, member, {**shared, **values, "trial_id": f"{trial_id}_{k}"},
                         path=trial_files.member_folder(folder, k))
        row["stack"], row["stack_members"] = trial_id, len(trial["members"])
        rows.append(row)
    return rows


def _checked(report: Any) -> dict[str, Any]:
    """A final report whose values have the types the engine writes; anything else raises
    ValueError (the trial is listed as damaged): a metric that is not a number or None, or is
    infinite (never a result), an accuracy matrix that is not one row per task of numbers."""
    if not isinstance(report, dict):
        raise ValueError("a report that is not a mapping")
    for key in ("score", "seconds", "timestamp", "time_total_s", "stored_examples", *METRIC_COLUMNS,
                *VALIDATION_COLUMNS):
        value = report.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{key} is {type(value).__name__}, not a number")
        if key in (*METRIC_COLUMNS, *VALIDATION_COLUMNS) and value is not None and math.isinf(value):
            raise ValueError(f"{key} is {value}, which no run reports")
    for key in ("accuracy_matrix", "validation_matrix"):
        matrix = report.get(key)
        if matrix is None:
            continue
        n = report.get("n_tasks")
        if not isinstance(matrix, list) or not all(
                isinstance(row, list) and (not isinstance(n, int) or len(row) == n) and all(
                    value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
                    for value in row) for row in matrix) or len({len(row) for row in matrix}) > 1:
            raise ValueError(f"{key} is not one row of numbers per task")
    for key in ("task", "n_tasks"):
        value = report.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{key} is {type(value).__name__}, not a whole number")
    return report


def _trial_row(root: Path, folder: Path, config: dict[str, Any], trial: dict[str, Any], last: dict[str, Any],
               path: Path | None = None) -> dict[str, Any]:
    study = config.get("study", {})
    status = last.get("status")
    if status not in trial_files.ENDED_STATUSES:
        status = "errored" if (folder / trial_files.ERROR).exists() else "incomplete"
    params = dict(trial.get("params", {}))
    row: dict[str, Any] = {
        "phase": folder.parent.relative_to(root).as_posix() if folder.parent != root else "",
        "trial_id": last.get("trial_id", folder.name),
        "method": trial.get("method"),
        "benchmark": study.get("benchmark"),
        "seed": trial.get("seed"),
        **params,
        # which columns this trial searched (names; the values are in those columns and in `config`)
        "searched": ",".join(sorted(params)),
        "config": ", ".join(f"{k}={_short(params[k])}" for k in sorted(params)),
        "status": status,
        "tasks_done": int(last.get("task", 0) or 0),
        "n_tasks": last.get("n_tasks"),
        "diverged_at_task": last.get("diverged_at_task"),
        "diverged_reason": last.get("diverged_reason"),  # NaN/inf, a finite blow-up or a collapse to chance
        **{m: _number(last.get(m)) if status == "finished" else math.nan for m in METRIC_COLUMNS + VALIDATION_COLUMNS},
        "score": _number(last.get("score")),
        "seconds": _number(last.get("seconds")),
        "stored_examples": _number(last.get("stored_examples")),  # a replay method's buffer at the end; 0: none
        # when the trial's last report came (Unix time) and how long its trainable ran: compute spent
        "ended_at": _number(last.get("timestamp")),
        "time_total_s": _number(last.get("time_total_s")),
        "first_tasks": int(study.get("fixed", {}).get("first_tasks") or 0),  # 0: the whole stream
        "node_id": last.get("node_id"),
        "threads": last.get("threads"),
        "device": last.get("device"),
        "error": _first_line(folder / trial_files.ERROR) if status == "errored" else None,
        "path": str(path or folder),  # a stack's member: FOLDER/memberK, its arrays' place in the checkpoint
    }
    # per_task | shared | class_incremental: how tasks map to output layers (None: a sweep from before)
    row["output"] = last.get("output") or study.get("fixed", {}).get("output")
    row["higher_is_better"] = bool(last.get("higher_is_better", True))  # False: a loss (the VAE's -ELBO)
    # explicit | implicit for the quadratic-penalty methods (searched, fixed or default), else None
    row["penalty_step"] = (params.get("penalty_step") or trial.get("options", {}).get("penalty_step")
                           or last.get("penalty_step"))
    return row


def final_from_checkpoint(folder: Path, reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A trial's last report rebuilt from the result.json its final checkpoint holds, where the
    trial's own report file lost it (cut short by a killed writer or a full disk): the checkpoint
    is written whole, so a finished trial is never taken for an unfinished one."""
    checkpoint = last_checkpoint(folder)
    path = checkpoint / trial_files.RESULT if checkpoint else None
    if path is None or not path.exists():
        return None
    try:
        saved = json.loads(trial_files.read_text(path, trial_files.REPORTS_FILE) or "")
        if "members" in saved:  # a stack's checkpoint: every member's result
            members = [_as_report(m) for m in saved["members"]]
            report = {"status": "finished", "members": members, "task": max(m["task"] for m in members)}
        else:
            report = _as_report(saved)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    ids = {"trial_id": reports[-1]["trial_id"]} if reports and "trial_id" in reports[-1] else {}
    return {**report, **ids, "recovered_from": str(path)}


def _as_report(result: dict[str, Any]) -> dict[str, Any]:
    """The fields of a final report that the engine's result.json holds (the sweep's score is
    the selection metric itself, read from its column)."""
    matrix = result["accuracy_matrix"]
    return {"status": result["status"], "task": len(matrix), "n_tasks": len(result["task_names"]),
            **{k: v for k, v in result["metrics"].items()},
            **{f"val_{k}": v for k, v in (result.get("validation_metrics") or {}).items()},
            "accuracy_matrix": matrix, "initial_accuracy": result.get("initial_accuracy"),
            "diverged_at_task": result.get("diverged_at_task"), "diverged_reason": result.get("diverged_reason"),
            "seconds": result.get("seconds"), "higher_is_better": (result.get("score") or {}).get("higher_is_better",
                                                                                                    True)}


def load_matrices(root: str | Path) -> pd.DataFrame:
    """Long table of every trial's accuracy matrix: trial_id, after_task, task, accuracy (1-based)."""
    records = []
    for folder in trial_folders(root):
        try:
            reports = read_final_reports(folder)
            _matrices_checked(reports)
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            continue  # damaged: load_trials lists it
        if not reports:
            continue
        trial_id = reports[-1].get("trial_id", folder.name)
        series = [(trial_id, reports)]
        if "members" in reports[-1]:  # a stacked trial: each member's reports, as its own trial's
            series = [(f"{trial_id}_{k}", [r["members"][k] for r in reports if "members" in r])
                      for k in range(len(reports[-1]["members"]))]
        for name, own in series:
            matrix = own[-1].get("accuracy_matrix")
            if matrix is None:  # unfinished: rebuild the finished rows from the per-task reports
                matrix = [r["accuracy_row"] for r in own if "accuracy_row" in r and not r.get("replayed")]
            for j, row in enumerate(matrix):
                records += [{"trial_id": name, "after_task": j + 1, "task": i + 1, "accuracy": a}
                            for i, a in enumerate(row)]
    return pd.DataFrame(records, columns=["trial_id", "after_task", "task", "accuracy"])


def _matrices_checked(reports: list[dict[str, Any]]) -> None:
    """Raise ValueError where a trial's last report (or a stack member's) has damaged values."""
    if reports:
        last = reports[-1]
        members = last.get("members")
        for member in (members if isinstance(members, list) else [last]):
            _checked(member)


def add_paper_fwt(trials: pd.DataFrame, matrices: pd.DataFrame) -> pd.DataFrame:
    """Fill ``fwt_paper`` (eq. 7) from the sweep's own joint runs.

    m_i is the final accuracy on task i of the joint run at its best configuration (highest
    mean ACC, when several learning rates were tried): from the trial of the same phase and
    seed where there is one, else of the same seed, else the mean over those joint trials.
    ``fwt_reference`` says which. Without a finished joint run, ``fwt_paper`` stays NaN.
    """
    from ..metrics import forward_transfer_paper  # pure numpy formulas, not the engine

    trials = trials.copy()
    trials["fwt_reference"] = None
    joint = trials[(trials["method"] == "joint") & (trials["status"] == "finished")]
    if joint.empty or matrices.empty:
        return trials
    labels = joint.apply(_config_key, axis=1)
    best = joint.assign(_config=labels).groupby("_config")["acc"].mean().idxmax()
    joint = joint[labels == best]
    rows = {tid: _matrix(matrices, tid)[-1] for tid in joint["trial_id"]}
    mean_row = list(pd.DataFrame(list(rows.values())).mean())
    for index, trial in trials[trials["status"] == "finished"].iterrows():
        same_seed = joint[joint["seed"] == trial["seed"]]
        same_phase = same_seed[same_seed["phase"] == trial["phase"]]
        if len(same_phase):
            reference, source = rows[same_phase["trial_id"].iloc[0]], "joint, same seed"
        elif len(same_seed):
            reference, source = rows[same_seed["trial_id"].iloc[0]], "joint, same seed"
        else:
            reference, source = mean_row, "joint, mean over seeds"
        matrix = _matrix(matrices, trial["trial_id"])
        if len(reference) == len(matrix[-1]):
            trials.at[index, "fwt_paper"] = forward_transfer_paper(matrix, reference)
            trials.at[index, "fwt_reference"] = source
    return trials


def _config_key(row: pd.Series) -> str:
    names = [n for n in str(row.get("searched") or "").split(",") if n]
    return ",".join(f"{n}={row[n]}" for n in names)


def _matrix(matrices: pd.DataFrame, trial_id: str) -> list[list[float]]:
    table = matrices[matrices["trial_id"] == trial_id].pivot(index="after_task", columns="task", values="accuracy")
    return table.sort_index().sort_index(axis=1).values.tolist()


def load_importances(folder: str | Path) -> dict[str, Any] | None:
    """A trial's saved importances: {"task0/trunk.0.weight": array, ...}, or None if not saved."""
    return _load_arrays(folder, trial_files.IMPORTANCES)


def load_pictures(folder: str | Path) -> dict[str, Any] | None:
    """A VAE trial's pictures after each task: {"task0/originals": array (n, c, h, w),
    "task0/reconstructions": ..., "task0/samples": ...}; None if it has none."""
    return _load_arrays(folder, trial_files.PICTURES)


def load_parameters(folder: str | Path) -> dict[str, Any] | None:
    """A trial's saved parameters (``save_parameters``): {"task0/trunk.1.weight": array, ...} for
    the shared parameters after each task and {"importance0/trunk.1.weight": array, ...} for SPP's
    importance of them on that task; None if not saved."""
    return _load_arrays(folder, trial_files.PARAMETERS)


def _load_arrays(folder: str | Path, name: str) -> dict[str, Any] | None:
    """The arrays of ``name`` in a trial folder's last checkpoint, or None where it has none."""
    folder, member = Path(folder), ""
    if folder.name.startswith("member") and not folder.exists():  # a stack's member (load_trials' path)
        folder, member = folder.parent, folder.name
    checkpoint = last_checkpoint(folder)
    path = checkpoint / member / name if checkpoint else None
    if path is None or not path.exists():
        return None
    try:
        return trial_files.read_arrays(path)  # arrays only: an object array would unpickle
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        print(f"spp-sweep: skipping the unreadable {path} ({type(error).__name__}: {error})", file=sys.stderr)
        return None


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _first_line(path: Path) -> str | None:
    try:
        lines = [line for line in (trial_files.read_text(path) or "").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    return lines[-1][:300] if lines else None

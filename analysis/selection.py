"""How a choice is made from a sweep's results: a robust value, ties said out loud, which
hyperparameters matter, and what the choice cost.

Every function reads trial tables (``analysis.load.load_trials``) or a sweep folder's own
files (``study.yaml``), never the engine. ``spp-sweep recommend`` and the sweep report use them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spp_sweep import trial_files
from spp_sweep.results.tables import DIVERGED_VALUE, config_label, higher_is_better

from .inference import MARGIN, equivalent, holm, paired, verdict


# -- a value from the interior of the stable region, not the argmax ------------------------------
def robust_choice(curve: pd.DataFrame, metric: str = "val_acc", tolerance: float = 0.01,
                  parameter: str = "lam") -> dict[str, Any] | None:
    """The middle of the region where every seed finished and the mean stays near the best.

    Per value of ``parameter`` (a log grid, seeds as repeats): *stable* when no seed diverged
    or failed and the mean of ``metric`` over seeds is within ``tolerance`` of the best such
    mean. The stable region is the contiguous run of stable grid values around the best one;
    the robust choice is its grid value nearest the region's centre on the log scale (the
    smaller of two equally near). A single-seed argmax sits at the edge of divergence as
    often as not (docs/guide/selection.md: SPP λ=15.9 diverged on 3 of 5 seeds); the centre keeps a margin on
    both sides. ``at_edge`` says the region reaches the end of the grid (it may go further).
    """
    done = curve[curve["status"].isin(["finished", "diverged", "errored"]) & curve[parameter].notna()]
    if done.empty:
        return None
    per_value = []
    for value, group in done.groupby(parameter):
        finished = group[group["status"] == "finished"]
        per_value.append({"value": float(value), "seeds": len(group), "finished": len(finished),
                          "mean": float(finished[metric].mean()) if len(finished) else math.nan,
                          "std": float(finished[metric].std(ddof=1)) if len(finished) > 1 else 0.0})
    table = pd.DataFrame(per_value).sort_values("value").reset_index(drop=True)
    complete = table["finished"].eq(table["seeds"]) & table["mean"].notna()
    if not complete.any():
        return None
    best_index = int(table.loc[complete, "mean"].idxmax())
    best = float(table.at[best_index, "mean"])
    stable = complete & (table["mean"] >= best - tolerance - 1e-12)
    low = high = best_index
    while low - 1 >= 0 and stable[low - 1]:
        low -= 1
    while high + 1 < len(table) and stable[high + 1]:
        high += 1
    logs = np.log10(table["value"].to_numpy())
    centre = (logs[low] + logs[high]) / 2
    inside = list(range(low, high + 1))
    robust_index = min(inside, key=lambda i: (round(abs(logs[i] - centre), 9), table.at[i, "value"]))
    row = table.loc[robust_index]
    return {
        "parameter": parameter, "metric": metric, "tolerance": tolerance,
        "argmax": float(table.at[best_index, "value"]), "argmax_mean": best,
        "argmax_std": float(table.at[best_index, "std"]),
        "robust": float(row["value"]), "robust_mean": float(row["mean"]), "robust_std": float(row["std"]),
        "stable_low": float(table.at[low, "value"]), "stable_high": float(table.at[high, "value"]),
        "decades": float(logs[high] - logs[low]), "at_edge": low == 0 or high == len(table) - 1,
        "table": table,
    }


# -- ties ---------------------------------------------------------------------------------------
def tie_table(trials: pd.DataFrame, order: list[str], metric: str = "val_acc",
              margin: float = MARGIN) -> pd.DataFrame:
    """Each method's per-seed ``metric`` against the leader's (``order[0]``), seeds paired.

    The difference method(seed) − leader(seed) over the seeds both ran (diverged seeds at -1,
    as in ranking) gets its 95% t interval, Holm's correction over the methods behind the leader,
    and the words of :func:`analysis.inference.verdict`. A method is *equivalent* to the leader
    only where the whole interval (Holm-widened) lies inside ±``margin`` (TOST): the one case where the data
    say the choice does not matter, so the only one where a simpler method may replace the
    leader. "Not separated" is no such licence: at three seeds it holds gaps of several points.
    ``parameters`` counts what was searched and ``seconds`` is the mean run time, for preferring
    the simplest, cheapest among the equivalent.
    """
    def values(method: str) -> pd.Series:
        rows = trials[(trials["method"] == method) & trials["status"].isin(["finished", "diverged"])]
        scored = pd.Series(np.where(rows["status"] == "diverged", DIVERGED_VALUE, rows[metric]).astype(float),
                           index=rows["seed"].to_numpy())
        return scored.groupby(level=0).mean()  # each seed once

    leader = values(order[0])
    diffs = holm([paired(values(method), leader) for method in order[1:]])
    out = []
    for method, diff in zip(order, [None, *diffs], strict=True):
        mine = values(method)
        rows = trials[trials["method"] == method]
        names = [n for n in str(rows["searched"].iloc[0] if len(rows) else "").split(",") if n]
        out.append({"method": method, "mean": float(mine.mean()) if len(mine) else math.nan,
                    "std": float(mine.std(ddof=1)) if len(mine) > 1 else math.nan, "seeds": len(mine),
                    "vs_leader": "leader" if diff is None else verdict(diff, margin),
                    "difference": 0.0 if diff is None else diff.mean,
                    "low": 0.0 if diff is None else diff.low, "high": 0.0 if diff is None else diff.high,
                    "p_holm": math.nan if diff is None else diff.p_adjusted,
                    "equivalent_to_leader": diff is None or equivalent(diff, margin),
                    "parameters": len(names),
                    "seconds": float(rows["time_total_s"].mean()) if "time_total_s" in rows else math.nan})
    return pd.DataFrame(out)


# Run times this close to the fastest tied method's count as equal: a small trial's time varies
# by 10-20% between runs of one command (LwF 0.24 and 0.21 s, MAS 0.21 and 0.23 s in two runs of
# `recommend my_digits.npz`), which would otherwise flip the recommendation run to run.
SECONDS_TOLERANCE = 0.25


def simplest_of_tied(ties: pd.DataFrame) -> str:
    """Among the methods equivalent to the leader (the leader included), the one with the fewest searched
    hyperparameters, then the clearly shortest mean run time (more than ``SECONDS_TOLERANCE``
    shorter), then the better ranked: the cheapest choice the data allow, the same in every run."""
    tied = ties[ties["equivalent_to_leader"]]
    simplest = tied[tied["parameters"] == tied["parameters"].min()]
    seconds = simplest["seconds"].fillna(math.inf)
    fastest = float(seconds.min())
    quick = simplest[seconds <= fastest * (1 + SECONDS_TOLERANCE)] if math.isfinite(fastest) else simplest
    return str(quick.iloc[0]["method"])  # ties come in ranking order


# -- how sure a grid's choice is ------------------------------------------------------------------
CHOICE_RESAMPLES = 2000  # bootstrap draws of the seeds; the shares move by about ±0.01 at this many
ALSO_CHOSEN = 0.05  # a configuration chosen in at least this share of the draws is named beside the choice


def choice_stability(trials: pd.DataFrame, metric: str = "val_acc",
                     resamples: int = CHOICE_RESAMPLES) -> pd.DataFrame:
    """How often each method's grid choice would stand if its seeds were drawn again.

    The seeds of a grid phase are resampled with replacement (a fixed generator: the same table
    every time) and each draw chooses as the sweep does (mean of ``metric`` over the drawn seeds,
    a diverged seed at DIVERGED_VALUE, ties to the smaller searched values). ``share``: the
    draws that choose the configuration all seeds chose; ``also chosen``: any other chosen in at
    least ALSO_CHOSEN of the draws. Three seeds leave 10 distinct draws, so a share is coarse, but
    a choice that one seed decides shows as such. Methods without a grid over shared seeds (an
    Optuna phase, one configuration) are left out."""
    grid = trials[trials["phase"] == trial_files.GRID_PHASE] if "phase" in trials else trials
    done = grid[grid["status"].isin(["finished", "diverged"])]
    rng = np.random.default_rng(0)
    rows = []
    for method, group in done.groupby("method", sort=False):
        names = [n for n in str(group["searched"].fillna("").iloc[0]).split(",") if n]
        if not names:
            continue
        higher = higher_is_better(group)
        score = group[metric].astype(float) if higher else -group[metric].astype(float)
        value = np.where(group["status"] == "diverged", DIVERGED_VALUE if higher else -np.inf, score)
        labelled = group.assign(config=group.apply(config_label, axis=1), _value=value)
        table = labelled.pivot_table(index="config", columns="seed", values="_value", aggfunc="mean").dropna()
        if len(table) < 2 or table.shape[1] < 2:
            continue
        # the order ties resolve in: smaller searched values first, as best_configs does
        ranked = labelled.sort_values(names, kind="mergesort")["config"].drop_duplicates()
        order = [c for c in ranked if c in table.index]
        matrix = table.loc[order].to_numpy(float)
        draws = rng.integers(0, matrix.shape[1], size=(resamples, matrix.shape[1]))
        picks = np.argmax(np.round(matrix[:, draws].mean(axis=2), 12), axis=0)  # the first best: the smaller
        shares = np.bincount(picks, minlength=len(order)) / resamples
        chosen = int(np.argmax(np.round(matrix.mean(axis=1), 12)))
        also = sorted(((shares[k], order[k]) for k in range(len(order)) if k != chosen and shares[k] >= ALSO_CHOSEN),
                      reverse=True)
        rows.append({"method": method, "chosen": order[chosen], "seeds": matrix.shape[1],
                     "share": round(float(shares[chosen]), 3),
                     "also chosen": "; ".join(f"{config} ({share:.2f})" for share, config in also) or "none"})
    return pd.DataFrame(rows, columns=["method", "chosen", "seeds", "share", "also chosen"])


# -- which hyperparameters matter ---------------------------------------------------------------
def hyperparameter_importances(root: str | Path, trials: pd.DataFrame | None = None,
                               plan: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per method, Optuna's fANOVA importance of every searched hyperparameter.

    Reads the searched spaces from the sweep's ``plan.json`` (``spp_sweep.trial_files``; or
    ``plan``, which ``spp-sweep report`` builds from the study file of a sweep older than plans)
    and each method's finished trials of the ``optuna`` phase (diverged ones at -1, as in
    ranking), hands them to an in-memory Optuna study and asks
    ``optuna.importance.get_param_importances`` with its ``FanovaImportanceEvaluator`` (seeded).
    One row per (method, hyperparameter); a method with fewer than 3 usable trials, or whose
    trials all scored the same, gets NaN importances (too few to fit the forest, or no variance
    to attribute).
    """
    from optuna.distributions import IntDistribution, json_to_distribution

    from spp_sweep.results.load import load_trials

    columns = ["method", "hyperparameter", "importance", "trials", "evaluator"]
    root = Path(root)
    plan = plan if plan is not None else trial_files.read_plan(root)
    if plan is None:  # no plan here (a phase folder): nothing says what was searched
        return pd.DataFrame(columns=columns)
    trials = load_trials(root) if trials is None else trials
    rows = []
    for method, space in plan["spaces"].items():
        # the Optuna phase (``optuna-METHOD``: a sweep from before its methods shared one phase)
        searched = trials[trials["phase"].isin([trial_files.OPTUNA_PHASE, f"optuna-{method}"])
                          & (trials["method"] == method)] if "phase" in trials else trials.iloc[0:0]
        if not space or searched.empty:
            continue
        distributions = {name: json_to_distribution(json.dumps(d)) for name, d in space.items()}
        usable = searched[searched["status"].isin(["finished", "diverged"])]
        observed = tuple((tuple((n, int(trial[n]) if isinstance(d, IntDistribution) else trial[n])
                                for n, d in distributions.items()),
                          DIVERGED_VALUE if trial["status"] == "diverged" else float(trial[plan["metric"]]))
                         for _, trial in usable.iterrows())
        importances = _fanova(json.dumps(space, sort_keys=True), observed)
        rows += [{"method": method, "hyperparameter": name, "importance": float(importances.get(name, math.nan)),
                  "trials": len(usable), "evaluator": "fANOVA (Optuna)"} for name in distributions]
    return pd.DataFrame(rows, columns=columns)


@functools.lru_cache(maxsize=64)
def _fanova(space: str, observed: tuple[tuple[tuple[tuple[str, Any], ...], float], ...]) -> dict[str, float]:
    """Optuna's seeded fANOVA importances of ``observed`` ((params, value) pairs) over ``space``
    (JSON of Optuna distributions); {} for fewer than 3 trials or equal scores (nothing to
    attribute). A function of its arguments only, so it is kept: ``recommend`` reports one search
    twice (its report and the recommendation), and each fit took 0.2-0.4 s."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    distributions = {name: json_to_distribution(json.dumps(d)) for name, d in json.loads(space).items()}
    scores = [value for _, value in observed]
    if len(observed) < 3 or max(scores) <= min(scores):
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per in-memory study
    try:
        optuna_study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for params, value in observed:
        optuna_study.add_trial(optuna.trial.create_trial(params=dict(params), distributions=distributions,
                                                         value=value))
    return dict(get_param_importances(optuna_study, evaluator=FanovaImportanceEvaluator(seed=0)))


# -- what a protocol spent ----------------------------------------------------------------------
def compute_spent(trials: pd.DataFrame, root: str | Path | None = None) -> pd.DataFrame:
    """Per phase: trials, trial-tasks trained (tasks each trial finished, summed), the trials'
    own run time summed, and wall time.

    Wall time is the driver's clock around the phase's Ray Tune experiments (``phase_times.json``
    in ``root``, which the sweep writes: Ray's start-up of the phase, its workers' imports and
    checkpoints included); for a sweep without that file, the span from the first trial's start
    to the last trial's report, which leaves those fixed costs out (``wall_from`` says which).
    A stacked trial's rows each carry a share of its time, so its start is its end less the whole.
    With ``root``, a first row ``start-up`` holds what each command spent before its first phase
    (from the command's first line: imports, checks, Ray's start) and a last row ``shut-down``
    ending the Ray session the command started where it recorded one (``sweep``; ``recommend``
    ends it beside its reports), so the rows cover the commands from their first line.
    """
    columns = ["phase", "trials", "trial_tasks", "trial_seconds", "wall_seconds", "wall_from"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    clock = trial_files.read_phase_times(Path(root)) if root is not None else {}
    members = trials["stack_members"].fillna(1) if "stack_members" in trials else 1
    trials = trials.assign(_started=trials["ended_at"] - trials["time_total_s"] * members)
    order = trials.groupby("phase")["_started"].min().sort_values().index  # phases in the order they ran
    rows = []
    for phase in order:
        group = trials[trials["phase"] == phase]
        spans = clock.get(phase)
        wall = (sum(end - start for start, end in spans) if spans
                else float(group["ended_at"].max() - group["_started"].min()))
        rows.append({"phase": phase, "trials": len(group), "trial_tasks": int(group["tasks_done"].sum()),
                     "trial_seconds": float(group["time_total_s"].sum()), "wall_seconds": float(wall),
                     "wall_from": "driver" if spans else "trials"})
    if trial_files.STARTUP_PHASE in clock:  # the commands' own start-up: no trials, wall time only
        rows.insert(0, {"phase": trial_files.STARTUP_PHASE, "trials": 0, "trial_tasks": 0, "trial_seconds": 0.0,
                        "wall_seconds": float(sum(end - start for start, end in clock[trial_files.STARTUP_PHASE])),
                        "wall_from": "driver"})
    if trial_files.SHUTDOWN_PHASE in clock:  # ending the Ray session the command started, after its phases
        rows.append({"phase": trial_files.SHUTDOWN_PHASE, "trials": 0, "trial_tasks": 0, "trial_seconds": 0.0,
                     "wall_seconds": float(sum(end - start for start, end in clock[trial_files.SHUTDOWN_PHASE])),
                     "wall_from": "driver"})
    return pd.DataFrame(rows, columns=columns)

"""``spp-sweep status``: how far a sweep is, read from its folder alone (running or finished).

Per phase and method: the configurations the study plans, how many ended (finished, diverged,
stopped early by the ASHA scheduler, errored), how many are under way (a trial with at least
one task reported but no end) and how many have not started; then the elapsed time (from the
study file's creation to the newest report) and an estimate of the time left, elapsed × left /
ended (a straight-line estimate: phases differ in cost, so it is rough and says so). Nothing is
run; the trial files are read as the report reads them (analysis/load.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from .. import trial_files
from ..errors import ConfigError
from .lock import running
from .study import load_study

ENDED = (*trial_files.ENDED_STATUSES, "errored")  # a configuration that will not run again


def sweep_status(root: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """(the per phase-and-method table, totals: planned, ended, elapsed_s, left_s)."""
    from ..results.load import load_trials

    study_file = root / "study.yaml"
    if not study_file.exists():
        raise ConfigError(f"{root} has no study.yaml; give a sweep folder (STORAGE/NAME)")
    planned = load_study(study_file).planned_configurations()
    trials = load_trials(root) if any(root.rglob(trial_files.PARAMS)) else pd.DataFrame(columns=["phase", "method",
                                                                                           "status"])
    if len(trials):
        trials = trials.assign(phase=trials["phase"].str.split("/").str[0].str.replace(r"-rest\d*$", "", regex=True))
    rows = []
    for (phase, method), count in planned.items():
        mine = trials[(trials["phase"] == phase) & (trials["method"] == method)]
        status = mine["status"].value_counts()
        ended = int(sum(status.get(s, 0) for s in ENDED))
        running = int((mine["status"] == "incomplete").sum()) if len(mine) else 0
        rows.append({"phase": phase, "method": method, "planned": count,
                     **{s: int(status.get(s, 0)) for s in ENDED},
                     "under way": running, "not started": max(0, count - ended - running)})
    table = pd.DataFrame(rows)
    started = study_file.stat().st_mtime
    newest = float(trials["ended_at"].max()) if "ended_at" in trials and trials["ended_at"].notna().any() else started
    ended = int(table[list(ENDED)].to_numpy().sum()) if len(table) else 0
    total = int(table["planned"].sum()) if len(table) else 0
    finished_now = ended >= total
    elapsed = max(0.0, (newest if finished_now else max(newest, time.time())) - started)
    left = 0.0 if finished_now else (elapsed * (total - ended) / ended if ended else math.nan)
    return table, {"planned": total, "ended": ended, "elapsed_s": elapsed, "left_s": left}


def status_text(root: Path) -> str:
    table, totals = sweep_status(root)
    left = "none" if totals["left_s"] == 0 else ("unknown (nothing has ended yet)" if math.isnan(totals["left_s"])
                                                 else f"about {_duration(totals['left_s'])} (straight-line estimate)")
    if totals["left_s"] != 0 and not running(root):  # no driver holds the sweep's lock (lock.py)
        table = table.rename(columns={"under way": "interrupted"})
        left = "nothing is running it (interrupted); `spp-sweep sweep STUDY --resume` continues it"
    return "\n".join([
        f"sweep {root.name}: {totals['ended']} of {totals['planned']} configurations ended; elapsed "
        f"{_duration(totals['elapsed_s'])}; left: {left}", "", table.to_markdown(index=False)])


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"

"""The report of ``spp-sweep recommend``: the protocol, the ranking with its ties, the winner's
λ curve and robust choice, the choice on the whole stream, which hyperparameters matter, the
compute spent, and the config to use.

Reads the two sweeps' result folders (``search/`` and ``curve/``), like every analysis
module, and writes ``recommendation/`` beside them, replaced whole at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from spp_sweep import trial_files
from spp_sweep.results.load import load_trials

from . import figures
from .folders import replace_folder
from .robustness import robustness_scores
from .selection import compute_spent, hyperparameter_importances
from .style import display_name


def ranking_table(ranking: list[dict[str, Any]]) -> pd.DataFrame:
    """Rank, method, configuration, validation ACC (what decided), test ACC and BWT beside it,
    and how many training examples the method keeps (a replay buffer; 0: none)."""
    def cell(row: dict[str, Any], name: str) -> str:
        mean, std = row.get(f"{name}_mean"), row.get(f"{name}_std")
        return "n/a" if mean is None or mean != mean else f"{mean:.4f} ± {(std or 0.0):.4f}"

    return pd.DataFrame([{
        "rank": index + 1, "method": row["method"], "configuration": row.get("config") or "-",
        "validation ACC": cell(row, "val_acc"), "validation BWT": cell(row, "val_bwt"),
        "test ACC": cell(row, "acc"), "test BWT": cell(row, "bwt"),
        "stored examples": int(row.get("stored_examples") or 0),  # what the method keeps of the data
        "seeds": int(row["n_seeds"]), "diverged": int(row["n_diverged"]),
    } for index, row in enumerate(ranking)])


PROTOCOL_TEXT = {
    "end_of_training": "end-of-training selection: every candidate trained on the whole stream and chosen on its "
                       "final validation ACC (the usual protocol; optimistic, since a learner sees its stream once)",
    "first_tasks": "first-tasks selection (Lee et al. 2024): candidates trained on the first {tasks} tasks only and "
                   "chosen on their validation ACC; the choice then runs on the whole stream with its values fixed",
    "transfer": "transfer selection (Cha & Cho 2024): candidates tuned on {tune_on} and chosen on its validation ACC; "
                "the chosen values then run on this benchmark unchanged",
}


def write_recommendation(home: str | Path, ranking: list[dict[str, Any]], winner: dict[str, Any],
                         recommended: dict[str, Any], selected_on: str = "val_acc",
                         ties: pd.DataFrame | None = None, robust: dict[str, Any] | None = None,
                         protocol: dict[str, Any] | None = None, tolerance: float = 0.01,
                         reporting_since: float | None = None) -> Path:
    """Write ``home/recommendation/`` and return its recommendation.md. ``reporting_since`` (a
    ``time.monotonic()`` of this process): when the command stopped training and began its reports, so that
    compute.csv counts the reports' wall time too and adds up to the command's."""
    home = Path(home)
    out = home / "recommendation"
    context = {"ties": ties, "robust": robust, "protocol": protocol or {"protocol": "end_of_training"},
               "tolerance": tolerance, "reporting_since": reporting_since}
    replace_folder(out, lambda staging: _write(home, staging, ranking, winner, recommended, selected_on, context))
    return out / "recommendation.md"


def _write(home: Path, out: Path, ranking: list[dict[str, Any]], winner: dict[str, Any],
           recommended: dict[str, Any], selected_on: str, context: dict[str, Any]) -> None:
    protocol = context["protocol"]
    apart = protocol["protocol"] != "end_of_training"
    table = ranking_table(ranking)
    ties = context["ties"]
    if ties is not None and len(ties):
        words = dict(zip(ties["method"], ties["vs_leader"]))
        table.insert(2, "vs #1 (seeds paired)", [words.get(m, "-") for m in table["method"]])
    table.to_csv(out / "ranking.csv", index=False)
    (out / "ranking.md").write_text(table.to_markdown(index=False) + "\n")
    (out / "recommended.yaml").write_text(
        "# The configuration spp-sweep recommend selected (on validation ACC); run it with\n"
        "#   spp-sweep sweep recommended.yaml\n" + yaml.safe_dump(recommended, sort_keys=False))
    method = winner["method"]
    params = next(iter(recommended["methods"].values()))["options"]
    params = {**{k: v for k, v in recommended["fixed"].items() if k == "lr"}, **params}
    where = "the selection data" if apart else "validation"
    lines = [f"# Recommendation for {recommended['benchmark']} "
             f"({', '.join(f'{k}={v}' for k, v in recommended['benchmark_options'].items()) or 'defaults'})", "",
             f"**Use {_name(method)}** with {_config(params)}. Its search result re-run over "
             f"{winner['n_seeds']} seed{'s' * (winner['n_seeds'] != 1)}"
             f"{' on the selection data' if apart else ''}: validation ACC {_num(winner['val_acc_mean'])} ± "
             f"{winner['val_acc_std'] or 0.0:.4f} (test ACC {_num(winner['acc_mean'])}, test BWT "
             f"{_num(winner['bwt_mean'])})" + ("; the recommended λ is the robust choice below." if
                                                context["robust"] is not None else "."), "",
             f"**Protocol**: {_protocol_text(protocol)}.", "",
             f"Selected on {_selection(selected_on)}. Each method had the same TPE budget over its strength and "
             f"learning rate; its best configuration was then re-run over the seeds below (on {where}). A diverged "
             "seed counts as -1 when ranking.", ""]
    lines += _tie_lines(ties, method)
    lines += ["## Ranking" + (" (on the selection data)" if apart else ""), "", table.to_markdown(index=False), ""]
    search = load_trials(home / "search")
    if apart:
        lines += _evaluation_lines(home, search, protocol, out)
    curve_root = home / "curve"
    if curve_root.is_dir():
        curve = load_trials(curve_root)
        reference = search[(search["phase"] == trial_files.FINAL_PHASE) & search["method"].isin(["joint", "finetune"])]
        panels = [("val_acc", "validation ACC"), ("acc", "test ACC"), ("bwt", "test BWT")]
        robust = context["robust"]
        path = figures.lambda_curve(
            pd.concat([curve, reference], ignore_index=True), out, panels=panels, stem="lambda_robustness",
            band=None if robust is None else (robust["stable_low"], robust["stable_high"],
                                              f"stable region (within {context['tolerance']:g} val ACC)"),
            mark=None if robust is None else (robust["robust"], "robust choice"),
            heading=f"λ robustness of {_name(method)}" + (" on the selection data" if apart else ""))
        robust_scores = robustness_scores(curve, metric="val_acc")
        if path is not None:
            lines += [f"## λ-robustness of {_name(method)}" + (" (on the selection data)" if apart else ""), "",
                      f"![λ-robustness of {method}]({path.name}) ([PDF]({path.with_suffix('.pdf').name}))", ""]
        if len(robust_scores):
            robust_scores.to_csv(out / "robustness.csv", index=False)
        lines += _robust_lines(context["robust"], winner, curve, context["tolerance"])
    lines += _importance_lines(home / "search", search, out)
    lines += _compute_lines(home, protocol, out, context["reporting_since"])
    lines += ["## Files", "", "- `recommended.yaml`: a study that re-runs the recommendation "
              "(`spp-sweep sweep recommended.yaml`)",
              "- `ranking.csv` / `ranking.md`: the ranking above; `ties.csv`: the tie test",
              "- `hyperparameter_importance.csv`, `compute.csv`: the tables above",
              "- `../search/report/report.md`: the full report of the method comparison (every trial)", ""]
    (out / "recommendation.md").write_text("\n".join(lines))
    if ties is not None:
        ties.to_csv(out / "ties.csv", index=False)


def _protocol_text(protocol: dict[str, Any]) -> str:
    tune_on = protocol.get("tune_on") or {}
    options = ", ".join(f"{k}={v}" for k, v in (tune_on.get("benchmark_options") or {}).items())
    return PROTOCOL_TEXT[protocol["protocol"]].format(
        tasks=protocol.get("tasks"), tune_on=f"{tune_on.get('benchmark')}" + (f" ({options})" if options else ""))


def _tie_lines(ties: pd.DataFrame | None, chosen: str) -> list[str]:
    """Say out loud which methods the seeds cannot tell from the leader, and why the chosen one."""
    if ties is None or ties.empty:
        return []
    leader = ties.iloc[0]
    test = ("each method minus the leader, seeds paired, with its 95% interval after Holm's correction over the "
            "methods; *equivalent* only where the whole interval lies inside the margin, *not separated* where it "
            "contains 0 and reaches past the margin; intervals and p-values in `ties.csv`")
    if len(ties) > 1 and int(leader["seeds"]) < 2:
        return [f"**Ties**: not tested ({int(leader['seeds'])} seed; an interval needs 2 or more).", ""]
    equivalent = ties[ties["equivalent_to_leader"]].iloc[1:]
    unseparated = ties[ties["vs_leader"].str.startswith("not separated")]
    lines = []
    if len(equivalent):
        names = ", ".join(f"{_name(r['method'])} ({100 * r['difference']:+.2f} [{100 * r['low']:+.2f}, "
                          f"{100 * r['high']:+.2f}] points)" for _, r in equivalent.iterrows())
        reason = ("the leader" if chosen == leader["method"] else
                  "the simplest, cheapest of them: fewest searched hyperparameters, then shortest mean run time "
                  "(within 25%: the better ranked)")
        lines.append(f"**Equivalent to {_name(leader['method'])}**: {names}. The recommendation is {_name(chosen)}, "
                     f"{reason}. On this data the choice among them matters less than the seeds do.")
    if len(unseparated):
        names = ", ".join(f"{_name(r['method'])} ({100 * r['difference']:+.2f} [{100 * r['low']:+.2f}, "
                          f"{100 * r['high']:+.2f}] points)" for _, r in unseparated.iterrows())
        lines.append(f"**Not separated from {_name(leader['method'])}**, nor shown equivalent: {names}. More seeds "
                     "would tell whether the leader's lead is real; the recommendation keeps the better ranked.")
    if not lines:
        lines.append(f"**Ties**: none; {_name(leader['method'])} is ahead of every other method.")
    return [*lines, f"({test}.)", ""]


def _robust_lines(robust: dict[str, Any] | None, winner: dict[str, Any], curve: pd.DataFrame,
                  tolerance: float) -> list[str]:
    if robust is None:
        return []
    table = robust["table"]
    searched = float(winner["params"].get("lam", math.nan))
    near = table.iloc[(table["value"] - searched).abs().argsort()[:1]]

    def cell(row: pd.Series) -> str:
        return f"{row['mean']:.4f} ± {row['std']:.4f} ({int(row['finished'])}/{int(row['seeds'])} seeds)"

    at = {v: table[table["value"] == v].iloc[0] for v in (robust["robust"], robust["argmax"])}
    rows = [{"λ": "the search's best (TPE, one seed)", "value": f"{searched:.4g}",
             "validation ACC": cell(near.iloc[0])},
            {"λ": "best mean over seeds on the curve", "value": f"{robust['argmax']:.4g}",
             "validation ACC": cell(at[robust['argmax']])},
            {"λ": "**robust choice (recommended)**", "value": f"{robust['robust']:.4g}",
             "validation ACC": cell(at[robust['robust']])}]
    edge = (" The region reaches the end of the curve, so it may extend further; the choice is the centre of what "
            "was measured." if robust["at_edge"] else "")
    return [f"**Robust choice**: λ is stable where every seed finished and the mean validation ACC is within "
            f"{tolerance:g} of the best mean: from λ = {robust['stable_low']:.4g} to {robust['stable_high']:.4g} "
            f"({robust['decades']:.2f} decades). The recommendation is the grid value nearest that region's centre on "
            f"the log scale, at the winner's learning rate.{edge}", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


def _evaluation_lines(home: Path, search: pd.DataFrame, protocol: dict[str, Any], out: Path) -> list[str]:
    """The chosen values on DATA's whole stream, beside what selection saw; the gap to
    end-of-training selection when ``reference/`` ran; the robust choice on DATA."""
    from spp_sweep.results.tables import summarize_configs

    def summary(trials: pd.DataFrame) -> pd.DataFrame:
        return summarize_configs(trials, metric="val_acc").set_index("method") if len(trials) else pd.DataFrame()

    selected = summary(search[search["phase"] == trial_files.FINAL_PHASE])
    evaluated = summary(search[search["phase"] == trial_files.EVALUATE_PHASE])
    reference = pd.DataFrame()
    if (home / "reference").is_dir():
        ref = load_trials(home / "reference")
        reference = summary(ref[ref["phase"] == trial_files.FINAL_PHASE])
    seen = ("the first {} tasks".format(protocol.get("tasks")) if protocol["protocol"] == "first_tasks"
            else (protocol.get("tune_on") or {}).get("benchmark", "the tuning benchmark"))
    rows = []
    for method in evaluated.index:
        row = {"method": _name(method), "configuration": evaluated.at[method, "config"] or "-",
               f"val ACC on {seen}": _cell(selected, method, "val_acc"),
               "val ACC here": _cell(evaluated, method, "val_acc"), "test ACC here": _cell(evaluated, method, "acc"),
               "test BWT here": _cell(evaluated, method, "bwt")}
        if protocol["protocol"] == "transfer" and method in selected.index:
            row["drop (val ACC)"] = _difference(selected.at[method, "val_acc_mean"],
                                                evaluated.at[method, "val_acc_mean"])
        if method in reference.index:
            row["end-of-training choice"] = reference.at[method, "config"] or "-"
            row["its test ACC"] = _cell(reference, method, "acc")
            row["gap (test ACC)"] = _difference(evaluated.at[method, "acc_mean"], reference.at[method, "acc_mean"])
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "evaluation.csv", index=False)
    lines = ["## The choice on this benchmark's whole stream", "",
             "Each method's chosen values, fixed, over the same seeds on the data they are meant for (phase "
             "`evaluate`); what selection saw is beside them." +
             (" `drop` is the tuning benchmark's validation ACC minus this one's." if protocol["protocol"] == "transfer"
              else "") +
             (" The end-of-training columns come from `reference/`, the same search on the whole stream; the gap is "
              "this protocol's test ACC minus that choice's." if len(reference) else
              " How far this is from end-of-training selection is measured by `--compare` (it runs that search too)."),
             "", table.to_markdown(index=False, disable_numparse=True), ""]
    if (home / "robust").is_dir():
        robust = summary(load_trials(home / "robust"))
        for method in robust.index:
            lines += [f"The robust choice ({robust.at[method, 'config']}) on the whole stream: validation ACC "
                      f"{_cell(robust, method, 'val_acc')}, test ACC {_cell(robust, method, 'acc')} (`robust/`).", ""]
    return lines


def _importance_lines(search_root: Path, search: pd.DataFrame, out: Path) -> list[str]:
    importances = hyperparameter_importances(search_root, search)
    if importances.empty:
        return []
    importances.to_csv(out / "hyperparameter_importance.csv", index=False)
    path = figures.hyperparameter_importance(importances, out)
    shown = importances.assign(method=importances["method"].map(_name),
                               importance=importances["importance"].map(lambda v: "n/a" if v != v else f"{v:.2f}"))
    lines = ["## Which hyperparameters matter", "",
             "Optuna's fANOVA importance over each method's TPE trials (share of the validation score's variance "
             "each hyperparameter explains, diverged trials at -1). With a dozen trials read it as a rough "
             "ordering; a method with one searched hyperparameter gets 1.0 by construction, and n/a means fewer than 3 "
             "trials or all of them scoring the same.", "",
             shown.drop(columns=["evaluator"]).to_markdown(index=False), ""]
    if path is not None:
        lines += [f"![hyperparameter importance]({path.name})", ""]
    return lines


def _compute_lines(home: Path, protocol: dict[str, Any], out: Path, reporting_since: float | None) -> list[str]:
    """Trials, trial-tasks and time per sweep phase, and the total of the protocol's own sweeps;
    last, the reports' own wall time (the search's full report, the ranking, fANOVA, figures)."""
    rows = []
    for folder in ("search", "curve", "robust", "reference"):
        if (home / folder).is_dir():
            spent = compute_spent(load_trials(home / folder), home / folder)
            rows += [{"sweep": folder, **row} for row in spent.to_dict("records")]
    if not rows:
        return []
    if reporting_since is not None:
        rows.append({"sweep": "recommendation", "phase": "reports", "trials": 0, "trial_tasks": 0,
                     "trial_seconds": 0.0, "wall_seconds": max(0.0, time.monotonic() - reporting_since),
                     "wall_from": "driver"})
    table = pd.DataFrame(rows)
    table.to_csv(out / "compute.csv", index=False)
    own = table[~table["sweep"].isin(["reference", "recommendation"])]
    reports = table.loc[table["sweep"] == "recommendation", "wall_seconds"].sum()
    shown = table.assign(trial_seconds=table["trial_seconds"].round(1), wall_seconds=table["wall_seconds"].round(1))
    lines = ["## Compute spent", "",
             f"This protocol's sweeps trained {int(own['trial_tasks'].sum())} trial-tasks (tasks trained, summed over "
             f"trials) in {own['trial_seconds'].sum():.0f} s of trial time and {own['wall_seconds'].sum():.0f} s of "
             "wall time (phases run one after another; `wall_from: driver`: the driver's clock around each phase, "
             "Ray's start-up and the workers' imports included; `trials`: first trial start to last report, "
             "for sweeps that did not record it)" + (f"; writing the reports took {reports:.0f} s more (last row)."
                                                     if reports else ".")]
    ref = table[table["sweep"] == "reference"]
    if len(ref):
        lines[-1] += (f" The end-of-training search it is compared with (`reference/`) trained "
                      f"{int(ref['trial_tasks'].sum())} trial-tasks in {ref['trial_seconds'].sum():.0f} s of trial "
                      "time.")
    lines += ["", shown.to_markdown(index=False), ""]
    return lines


def _cell(summary: pd.DataFrame, method: str, column: str) -> str:
    """mean ± std over the finished seeds, saying how many seeds diverged."""
    if method not in summary.index or f"{column}_mean" not in summary:
        return "n/a"
    mean, std = summary.at[method, f"{column}_mean"], summary.at[method, f"{column}_std"]
    seeds, diverged = int(summary.at[method, "n_seeds"]), int(summary.at[method, "n_diverged"])
    if math.isnan(mean):
        return f"diverged ({diverged}/{seeds} seeds)" if diverged else "n/a"
    note = f" ({diverged}/{seeds} seeds diverged)" if diverged else ""
    return f"{mean:.4f} ± {(0.0 if math.isnan(std) else std):.4f}{note}"


def _difference(ours: float, theirs: float) -> str:
    return "n/a (a side diverged)" if math.isnan(ours) or math.isnan(theirs) else f"{ours - theirs:+.4f}"


def _name(method: str) -> str:
    return display_name(method)


def _selection(metric: str) -> str:
    if metric.startswith("val_"):
        return (f"validation {metric[4:].upper()} (a seeded part of each task's training data held out; the test "
                "set took no part in any choice)")
    return f"test {metric.upper()}"


def _config(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()) or \
        "its defaults"


def _num(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

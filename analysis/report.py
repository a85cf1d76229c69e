"""``spp-sweep report``: a sweep folder -> report.md with its tables and figures beside it.

Writes into ``out``: report.md; trials.csv/.parquet (one row per trial) and
accuracy_matrices.csv (long); best_configs.md/.csv/.tex (Tables 2/3); robustness.csv;
lambda_robustness.png/.pdf (Figure 4), accuracy_matrices.png/.pdf, running_accuracy.png/.pdf
(Figure 7a), importance.png/.pdf and importance_concentration.csv (Figure 6) where the
sweep saved importances, hyperparameter_importance.csv/.png where Optuna searched. Works on a sweep
that is still running: it reports what finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from spp_sweep import trial_files
from spp_sweep.code_version import describe as describe_code
from spp_sweep.results.load import STATUSES, add_paper_fwt, load_importances, load_matrices, load_trials
from spp_sweep.results.tables import best_configs, config_label, higher_is_better, one_per_seed
from spp_sweep.safe_yaml import read_yaml

from . import figures
from .claims import comparing_tables, report_phases
from .folders import replace_folder
from .generative import SCORE_NOTE, generative_lines
from .importance import concentration, concentration_table, importance_table, placement
from .inference import MARGIN
from .paper import comparison_table, figure4_band, paper_results
from .parameter_report import parameter_lines
from .robustness import robustness_scores
from .selection import ALSO_CHOSEN, CHOICE_RESAMPLES, choice_stability, hyperparameter_importances
from .style import display_name

FWT_NAMES = {"fwt_paper": "FWT (paper eq. 7, vs joint)", "fwt": "FWT (standard, vs untrained)"}


def write_report(root: str | Path, out: str | Path, plan: Mapping[str, Any] | None = None) -> Path:
    """Write every file of the report into ``out`` (replaced whole at the end); returns report.md.

    ``plan``: the sweep's plan (``spp_sweep.trial_files.PLAN``) where its folder has none (a sweep
    started before plans were written; ``spp-sweep report`` builds it from the study file)."""
    root, out = Path(root), Path(out)
    plan = plan if plan is not None else trial_files.read_plan(root)
    trials = load_trials(root)
    if trials.empty:
        from spp_sweep.errors import DataError

        raise DataError(f"{root} holds no Ray Tune trials (no params.json below it); give a sweep folder")
    matrices = load_matrices(root)
    damaged = trials.attrs.get("damaged", [])
    trials = add_paper_fwt(trials, matrices)
    trials.attrs["damaged"] = damaged
    metric = plan["metric"] if plan else _study_metric(root)
    trials = one_per_seed(trials)  # a sweep from before final seeds were new ones trained some twice
    trials.attrs["damaged"] = damaged
    replace_folder(out, lambda staging: _write(trials, matrices, metric, root, staging, plan), keep=(root,))
    return out / "report.md"


def _write(trials: pd.DataFrame, matrices: pd.DataFrame, metric: str, root: Path, out: Path,
           plan: Mapping[str, Any] | None) -> None:
    trials.drop(columns=["path"]).to_csv(out / "trials.csv", index=False)
    trials.drop(columns=["path"]).to_parquet(out / "trials.parquet", index=False)
    matrices.to_csv(out / "accuracy_matrices.csv", index=False)

    # Under first_tasks/transfer selection, phase `evaluate` holds the chosen configurations on the
    # data they are meant for; every other phase saw only what the protocol allows (a prefix of the
    # stream, another benchmark), so curves and robustness come from those, the table from evaluate.
    evaluated = (trials["phase"] == trial_files.EVALUATE_PHASE).any()
    compared, chosen_on = report_phases(trials)
    margin = float(plan.get("equivalence_margin", MARGIN)) if plan else MARGIN
    fwt_column = "fwt_paper" if trials["fwt_reference"].notna().any() else "fwt"
    best = best_configs(compared, metric=metric)
    table = format_best_table(best, fwt_column)
    higher = higher_is_better(trials)
    if not higher:
        # a loss (the VAE's negative ELBO): every copy of the table says which way is better
        table = table.rename(columns={c: f"{c} (−ELBO, lower is better)" for c in table.columns
                                      if c.split(" (")[0] in ("ACC", "BWT", "FWT", "val ACC", "val BWT")})
    table.to_csv(out / "best_configs.csv", index=False)
    (out / "best_configs.md").write_text(table.to_markdown(index=False) + "\n")
    (out / "best_configs.tex").write_text(latex_table(table))
    best_trials = _trials_of(compared, best)

    robust = robustness_scores(chosen_on, metric=metric if metric.endswith("acc") else "acc",
                               higher_is_better=higher)
    robust.to_csv(out / "robustness.csv", index=False)
    reproduces = _study_reproduces(root)
    # the paper's band is a λ range on its own benchmark: shaded there only (λ's scale follows the
    # importance magnitudes, which differ between benchmarks)
    on_paper_benchmark = paper_results()["figure4"]["benchmark"] in set(trials["benchmark"].dropna())
    curve = figures.lambda_curve(chosen_on, out, fwt_column=fwt_column,
                                 band=figure4_band() if "figure4" in reproduces and on_paper_benchmark else None,
                                 heading="λ robustness" if higher else
                                 "λ robustness (negative ELBO per image: lower is better)")
    memory = figures.lambda_curve(chosen_on, out, fwt_column=fwt_column, parameter="memory", stem="memory_curve",
                                  heading="Replay buffer size", axis="memory (the buffer size option)") \
        if "memory" in chosen_on else None
    heatmaps = figures.accuracy_heatmaps(matrices, best_trials, out, scale=None if higher else "loss")
    running = figures.running_accuracy(matrices, best_trials.assign(config=best_trials.apply(config_label, axis=1))
                                       if len(best_trials) else best_trials, out, higher_is_better=higher)
    importance, concentration = _importance(best_trials, out)

    lines = [f"# Sweep report: {root.name}", ""]
    lines += _status_lines(trials, plan["planned_trials"] if plan else None)
    lines += _code_lines(plan)
    lines += ["", "## Best configuration per method (Tables 2/3)", "",
              f"Selected by mean {_metric_name(metric)} over seeds ("
              + ("a diverged seed counts as -1" if higher else "lowest wins; a diverged seed ranks last")
              + "; ties go to the "
              f"smaller value), from the {'final re-runs' if compared is not trials else 'whole sweep'}. "
              f"Mean ± std over seeds. The FWT column is the {FWT_NAMES[fwt_column]}.", ""]
    if not higher:
        lines += [SCORE_NOTE, ""]
    lines += _protocol_lines(root, evaluated)
    lines += [table.to_markdown(index=False), ""]
    stability = choice_stability(chosen_on, metric)
    if len(stability):
        stability.to_csv(out / "choice_stability.csv", index=False)
        lines += ["### How sure each grid's choice is", "",
                  f"The grid's seeds drawn again with replacement ({CHOICE_RESAMPLES} draws), each draw choosing as "
                  "the sweep does: `share` is how often the configuration chosen on all seeds is chosen again, `also "
                  f"chosen` names any other chosen in at least {ALSO_CHOSEN:.0%} of the draws. A low share means "
                  "the choice rests on one seed; more seeds in the grid, not a finer grid, would settle it.", "",
                  stability.to_markdown(index=False), ""]
    if metric in ("acc", "bwt", "fwt", "smt"):
        lines += [f"**Warning**: this sweep selected on the test set (metric `{metric}`), so the table's test "
                  "numbers are optimistic; hold out a validation split (`fixed.validation: 0.2`) and select on "
                  "`val_acc` for numbers a reader can trust.", ""]
    lines += _versus_lines(compared, best, chosen_on, higher, out, margin)
    lines += _paper_lines(best, fwt_column, reproduces, trials, out)
    if len(robust):
        shown = robust.assign(decades=robust["decades"].map(lambda v: f"{v:.2f}"))
        lines += ["## Robustness to λ", "",
                  f"Width (decades of λ) of the contiguous swept range around the best λ whose mean "
                  f"{_split_name(robust['selected_on'].iloc[0])} ACC stays within 1 point of the best (`best_score`); "
                  "a λ with a diverged seed never counts. Limited by the grid. `best_acc` is the test ACC at the "
                  "best λ.", "",
                  shown.to_markdown(index=False, floatfmt=".4g"), ""]
    for title, path in [("λ-robustness curve (Figure 4)", curve), ("ACC, FWT and BWT against the replay buffer's size",
                                                                   memory),
                        ("Accuracy matrices of the best configurations",
                        heatmaps), ("Average accuracy as tasks are added (Figure 7a)", running),
                        ("Importance distributions (Figure 6)", importance)]:
        if path is not None:
            lines += [f"## {title}", "", f"![{title}]({path.name}) ([PDF]({path.with_suffix('.pdf').name}))", ""]
    searched = (trials["phase"].str.startswith(trial_files.OPTUNA_PHASE)).any()
    importances = hyperparameter_importances(root, trials, plan or {"metric": metric, "spaces": {}}) if searched \
        else pd.DataFrame()
    if len(importances) and importances["importance"].notna().any():
        importances.to_csv(out / "hyperparameter_importance.csv", index=False)
        path = figures.hyperparameter_importance(importances, out)
        lines += ["## Which hyperparameters matter", "", "Optuna's fANOVA importance over each method's Optuna "
                  "trials (share of the selection score's variance; diverged trials at -1; n/a: fewer than 3 trials "
                  "or equal scores).", "", importances.drop(columns=["evaluator"]).to_markdown(index=False,
                                                                                           floatfmt=".2f"), ""]
        if path is not None:
            lines += [f"![hyperparameter importance]({path.name})", ""]
    lines += _placement_lines(chosen_on, out)
    lines += parameter_lines(compared, out)
    lines += generative_lines(best_trials, out)
    if concentration is not None:
        lines += ["Concentration of the importances (normalised by their maximum; the seed drawn above, every "
                  "seed in `importance_concentration_by_seed.csv`):", "",
                  concentration.to_markdown(index=False, floatfmt=".3f"), ""]
    lines += ["## Files", "", "trials.csv / trials.parquet (one row per trial), accuracy_matrices.csv (long: "
              "trial_id, after_task, task, accuracy), best_configs.{md,csv,tex}, robustness.csv.", ""]
    (out / "report.md").write_text("\n".join(lines))


def format_best_table(best: pd.DataFrame, fwt_column: str) -> pd.DataFrame:
    """The paper's table layout: method, configuration, FWT, BWT, ACC as mean ± std."""
    def cell(row: pd.Series, name: str) -> str:
        mean, std = row.get(f"{name}_mean", math.nan), row.get(f"{name}_std", math.nan)
        return "n/a" if mean != mean else f"{mean:.4f} ± {std:.4f}"

    validated = "val_acc_mean" in best and best["val_acc_mean"].notna().any()
    return pd.DataFrame([{
        "method": row["method"], "configuration": row["config"] or "-",
        **({"output": _output_name(row.get("output"))} if "output" in best else {}),
        **({"val ACC": cell(row, "val_acc"), "val BWT": cell(row, "val_bwt")} if validated else {}),
        FWT_NAMES[fwt_column]: cell(row, fwt_column), "BWT": cell(row, "bwt"), "ACC": cell(row, "acc"),
        "seeds": int(row["n_seeds"]), "diverged": int(row["n_diverged"]),
    } for _, row in best.iterrows()])


OUTPUT_NAMES = {"per_task": "head per task", "shared": "one shared head (task's size)",
                "class_incremental": "one head, all classes"}


def _output_name(output: object) -> str:
    """How a table names the output layout (a sweep from before the setting: unknown)."""
    return OUTPUT_NAMES.get(output, "unknown") if isinstance(output, str) else "unknown"


def latex_table(table: pd.DataFrame) -> str:
    """The table as LaTeX (booktabs rules, ± as $\\pm$), with a comment saying what it needs."""
    body = table.to_latex(index=False, escape=True).replace("±", r"$\pm$")
    return "% spp-sweep report table; needs \\usepackage{booktabs} in the preamble\n" + body


def _trials_of(trials: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The finished trials (all seeds) of each method's best configuration."""
    if best.empty:
        return trials.iloc[0:0]
    done = trials[trials["status"] == "finished"].copy()
    done["config"] = done.apply(config_label, axis=1) if len(done) else []
    return done.merge(best[["method", "config"]], on=["method", "config"])


def _importance(best_trials: pd.DataFrame, out: Path) -> tuple[Path | None, pd.DataFrame | None]:
    """Figure 6: each selected configuration's importance densities and concentration from its
    first seed that saved them, and the concentration of every seed (``importance_concentration_by_seed.csv``,
    what a paired comparison of methods needs)."""
    frames, seeds = [], []
    for method, group in best_trials.groupby("method", sort=False):
        drawn_one = False
        for _, trial in group.sort_values("seed").iterrows():
            arrays = load_importances(trial["path"])  # best_trials: finished ones only
            if not arrays:
                continue
            values = importance_table(arrays, method)
            if not drawn_one:  # the densities: the first seed that saved its importances
                frames.append(values)
                drawn_one = True
            seeds.append({"method": method, "configuration": config_label(trial), "seed": trial["seed"],
                          "n": len(values), **concentration(values["value"].to_numpy())})
    if not frames:
        return None, None
    by_seed = pd.DataFrame(seeds)
    by_seed.to_csv(out / "importance_concentration_by_seed.csv", index=False)
    long = pd.concat(frames, ignore_index=True)
    table = concentration_table(long)
    table.to_csv(out / "importance_concentration.csv", index=False)
    concentration_table(long, per_layer=True).to_csv(out / "importance_concentration_by_layer.csv", index=False)
    first = by_seed.groupby("method", sort=False)["seed"].min()
    counts = by_seed.groupby("method", sort=False)["seed"].nunique()
    alike = first.nunique() == 1 and counts.nunique() == 1
    drawn = f"seed {first.iloc[0]}, one of {counts.iloc[0]} per method" if alike else \
        f"each method's first seed (of {', '.join(str(c) for c in counts)} seeds run)"
    figures.importance_densities(long, out, per_layer=True, drawn=drawn)
    return figures.importance_densities(long, out, drawn=drawn), table


def _placement_lines(trials: pd.DataFrame, out: Path) -> list[str]:
    """Where each configuration's importance sits (analysis/importance.placement), every λ, for
    trials that saved their importances; mean over seeds."""
    rows = []
    for _, trial in trials[trials["status"] == "finished"].iterrows():
        arrays = load_importances(trial["path"])
        if arrays:
            found = placement(arrays)
            rows.append({"method": trial["method"], "configuration": config_label(trial), "seed": trial["seed"],
                         **found})
    if not rows:
        return []
    table = pd.DataFrame(rows)
    table.to_csv(out / "importance_placement.csv", index=False)
    numbers = ["bias_share", "largest_tensor_share", "zeros_in_weights", "zeros_worst_weight_tensor"]
    summary = table.groupby(["method", "configuration"], sort=False).agg(
        **{name: (name, "mean") for name in numbers}, largest_tensor=("largest_tensor", "first"),
        seeds=("seed", "size")).reset_index()
    return ["## Where the importance lands", "",
            "Per configuration (mean over seeds), after the last task: the share of the total importance on bias "
            "vectors, the share on the largest single tensor (named), and the fraction of exactly-zero entries in "
            "the weight tensors, over all of them and in the worst one. Every trial in `importance_placement.csv`.",
            "", summary.to_markdown(index=False, floatfmt=".3g"), ""]


def _versus_lines(compared: pd.DataFrame, best: pd.DataFrame, chosen_on: pd.DataFrame, higher: bool,
                  out: Path, margin: float = MARGIN) -> list[str]:
    """Each selected regulariser against fine-tuning at its learning rate and against SPP (seeds
    paired), and Figure 4's claims measured on the λ grid (analysis/claims.py)."""
    if not higher or "finetune" not in set(compared["method"]):
        return []
    tables, notes = comparing_tables(compared, best, chosen_on, margin)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    lines: list[str] = []
    if "vs_finetune" in tables:
        lines += ["## Against fine-tuning at the same learning rate", "",
                  "Each selected configuration minus fine-tuning trained alike (same learning rate, seeds paired: "
                  "same initialisation and data order; each seed once), in points of test ACC and BWT: the mean "
                  "difference and its 95% t interval, Holm's correction over the table's rows (the interval widened "
                  f"to match). **above/below**: the interval excludes 0; **equivalent within ±{100 * margin:.2g}**: "
                  "the whole interval shown lies inside that margin; otherwise **not separated**, with the interval "
                  "(a difference smaller than the last column could not have been detected at these seeds, 80% "
                  "power).", "", tables["vs_finetune"].to_markdown(index=False), ""]
    lines += [*notes, ""] if notes else []
    if "versus_spp" in tables:
        lines += ["## SPP against each regulariser (the ranking of Tables 2/3)", "",
                  "SPP's selected configuration minus each other regulariser's, in points, seeds paired (each seed "
                  "once): the 95% interval after Holm's correction over the methods, worded as above.", "",
                  tables["versus_spp"].to_markdown(index=False), ""]
    for name, claims in tables.items():
        if name.startswith("figure4_claims"):
            step = name.removeprefix("figure4_claims").lstrip("_")
            lines += [f"## Figure 4's claims, measured here (SPP{', ' + step + ' step' if step else ''})", "",
                      "Each claim of the paper's Figure 4 (section 4.2.3) graded on this sweep's λ grid against "
                      "fine-tuning of the same phase, seeds paired, by its 95% interval: **confirmed** where the "
                      "interval lies on the claimed side, **refuted** where it excludes the claim, otherwise **not "
                      "settled** with the smallest effect these seeds could detect. The best λ is chosen on "
                      "validation ACC.",
                      "", claims.to_markdown(index=False), ""]
    return lines


def _code_lines(plan: Mapping[str, Any] | None) -> list[str]:
    """Which code trained these numbers (the plan's ``code``: one entry per start of the sweep)."""
    recorded = (plan or {}).get("code")
    entries = [entry for entry in recorded if isinstance(entry, dict)] if isinstance(recorded, list) else []
    if not entries:
        return []
    first, *later = entries
    text = f"Trained with {describe_code(first)}"
    if later:
        text += "; resumed with " + "; then ".join(describe_code(entry) for entry in later) + \
            " (trials finished before a resume ran under the earlier code)"
    return ["", text + "."]


def _status_lines(trials: pd.DataFrame, planned: int | None = None) -> list[str]:
    counts = trials["status"].value_counts()
    total = f"{len(trials)} of {planned}" if planned is not None and planned != len(trials) else f"{len(trials)}"
    lines = [f"{total} trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES) + "."]
    for _, row in trials[trials["status"] == "errored"].iterrows():
        lines.append(f"- errored: {row['method']} {config_label(row)} seed {row['seed']}: {row['error']}")
    diverged = trials[trials["status"] == "diverged"]
    if len(diverged):
        lines.append("- diverged (NaN/inf loss, a finite blow-up or a collapse to chance, see `diverged_reason`; "
                     "no metrics), one line per method:")
        for method, group in diverged.groupby("method"):
            names = [n for n in str(group["searched"].iloc[0] or "").split(",") if n]
            group = group.sort_values(names) if names else group
            labels = list(dict.fromkeys(_bracket(config_label(r)) for _, r in group.iterrows()))
            lines.append(f"  - {display_name(method)}: {', '.join(labels)} ({len(group)} trials)")
    for damaged in trials.attrs.get("damaged", []):  # load_trials could not read these trial folders
        lines.append(f"- damaged, left out of every table: {damaged}")
    return lines


def _paper_lines(best: pd.DataFrame, fwt_column: str, reproduces: list[str], trials: pd.DataFrame,
                 out: Path) -> list[str]:
    """The paper's published table beside ours, for each table the study says it reproduces."""
    lines: list[str] = []
    ran = set(trials["benchmark"].dropna())
    for name in [n for n in reproduces if n.startswith("table")]:
        published = paper_results()[name]
        table = comparison_table(best, name, fwt_column)
        table.to_csv(out / f"paper_{name}.csv", index=False)
        other = "" if published["benchmark"] in ran else (
            f" **This sweep ran {', '.join(sorted(ran))}, not {published['benchmark']}**: the columns are not the "
            "same experiment.")
        lines += [f"## The paper beside ours: {published['title']}", "",
                  f"The paper's numbers (section {published['section']}, in percent, as printed) beside this sweep's "
                  "best configurations (mean ± std over seeds). They are shown, never used to select anything. The "
                  "paper's FWT is its eq. 7; ours is given only where the sweep has a joint run to compute it."
                  + other, "", table.to_markdown(index=False, disable_numparse=True), ""]
    if "figure4" in reproduces:
        low, high, _ = figure4_band()
        claim = paper_results()["figure4"]
        where = (f"The λ curve below shades the paper's claim for Figure 4 (section {claim['section']})"
                 if claim["benchmark"] in ran else
                 f"The λ curve below does not shade the paper's claimed band: the paper measured it on "
                 f"{claim['benchmark']}, and λ's scale follows each benchmark's importance magnitudes; the claim "
                 f"(section {claim['section']}) is")
        lines += [f"{where}: SPP stable for λ in {low:g}–{high:g}, best at {claim['best']:g} (on the visual "
                  "sequence with VGG-9). The table \"Figure 4's claims, measured here\" tests each part on this "
                  "sweep.", ""]
    return lines


def _saved_study(root: Path) -> dict:
    """The sweep's study.yaml as a mapping ({} where there is none or it does not read)."""
    try:
        data = yaml.safe_load((root / "study.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _study_reproduces(root: Path) -> list[str]:
    """``reproduces`` of the sweep's study.yaml (a name or a list), [] when absent."""
    value = _saved_study(root).get("reproduces") or []
    return [value] if isinstance(value, str) else list(value)


def _protocol_lines(root: Path, evaluated: bool) -> list[str]:
    """Which data chose the configurations and which the table shows (study.yaml's selection)."""
    selection = _saved_study(root).get("selection") or {}
    protocol = selection.get("protocol", "end_of_training")
    if protocol == "first_tasks":
        seen = f"the first {selection.get('tasks')} tasks of the stream"
    elif protocol == "transfer":
        seen = f"another benchmark, {(selection.get('tune_on') or {}).get('benchmark')}"
    else:
        return ["Selection protocol: end of training (every trial saw the whole stream).", ""]
    shown = ("the table shows the chosen configurations on this benchmark's whole stream (phase `evaluate`)"
             if evaluated else "phase `evaluate` has not run yet, so the table shows what selection saw")
    return [f"Selection protocol: {protocol.replace('_', ' ')}: configurations were chosen on {seen} (every phase "
            f"but `evaluate`, and the λ curve below); {shown}.", ""]


def _bracket(label: str) -> str:
    return f"({label})" if "," in label else (label or "-")


def _split_name(metric: str) -> str:
    """``validation`` or ``test``: which split a metric is measured on."""
    return "validation" if metric.startswith("val_") else "test"


def _metric_name(metric: str) -> str:
    """How the report names the selection metric, saying whether the test set took part."""
    if metric.startswith("val_"):
        return (f"validation {metric[4:].upper()} (a held-out part of each task's training data; the test "
                "columns were not used to select)")
    return f"test {metric.upper()} (no validation split was held out)"


def _study_metric(root: Path) -> str:
    for candidate in (root / "study.yaml", root.parent / "study.yaml"):
        if candidate.exists():
            try:
                return (read_yaml(trial_files.read_text(candidate) or "").get("search") or {}).get("metric", "acc")
            except (yaml.YAMLError, AttributeError, ValueError, OSError):
                break
    return "acc"

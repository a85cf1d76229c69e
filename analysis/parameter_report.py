"""The report's section 4.2.5 part: Figures 7(b), 7(c), 8 and their table, for trials that saved
their parameters (``save_parameters: true``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spp_sweep.results.load import load_parameters

from . import parameter_figures
from .parameters import change_and_importance, importance_similarity, layers, n_tasks, per_weight, weighted_change
from .style import display_name


def parameter_lines(trials: pd.DataFrame, out: Path) -> list[str]:
    """Markdown lines (and files in ``out``) for every finished trial with saved parameters."""
    rows, saved_by_trial = [], {}
    for _, trial in trials[trials["status"] == "finished"].iterrows():
        saved = load_parameters(trial["path"])
        if not saved or n_tasks(saved) < 2:
            continue
        saved_by_trial[trial["trial_id"]] = saved
        table = importance_similarity(saved).merge(weighted_change(saved), on="layer").merge(per_weight(saved),
                                                                                             on="layer")
        rows.append(table.assign(method=trial["method"], config=trial.get("config", ""), seed=trial["seed"],
                                 trial_id=trial["trial_id"]))
    if not rows:
        return []
    matched = ["rank_corr_importance", "matched_distance", "rank_corr_change", "move_top", "move_bottom_half"]
    long = pd.concat(rows, ignore_index=True)[["method", "config", "seed", "trial_id", "layer", "frechet",
                                               "weighted_change", "change", *matched]]
    long.to_csv(out / "parameter_analysis.csv", index=False)
    tasks = n_tasks(next(iter(saved_by_trial.values())))
    similarity = parameter_figures.per_layer(
        long, "frechet", "Fréchet distance (lower: more alike)",
        f"Figure 7(b): importance distributions of task 1 and task {tasks}, per layer", out, "parameter_similarity")
    change = parameter_figures.per_layer(
        long, "weighted_change", "Σ Ω₁ (θ_T − θ₁)²  (log scale)",
        f"Figure 7(c): change from task 1 to task {tasks}, weighted by task 1's importance", out,
        "parameter_change", log=True)
    first_trials = (trials[trials["trial_id"].isin(saved_by_trial)].sort_values("seed")
                    .drop_duplicates("method"))
    layer = layers(next(iter(saved_by_trial.values())))[-1]  # the deepest trunk layer: the smallest matrix
    panels = [(row["method"], *change_and_importance(saved_by_trial[row["trial_id"]], layer))
              for _, row in first_trials.iterrows()]
    heatmaps = parameter_figures.change_heatmaps(panels, layer, 0, tasks - 1, out)
    summary = (long.groupby(["method", "layer"], sort=False)[["frechet", "weighted_change", "change"]]
               .agg(["mean", "std"]).reset_index())
    summary.columns = ["method", "layer", "frechet_mean", "frechet_std", "weighted_change_mean", "weighted_change_std",
                       "change_mean", "change_std"]
    summary["method"] = summary["method"].map(display_name)
    lines = ["## Parameter analysis (section 4.2.5: Figures 7b, 7c, 8)", "",
             f"From the shared parameters and SPP's label-free importance of them saved after each task "
             f"(`save_parameters`; the same importance measure for every method). Fréchet distance: between the "
             f"distributions of the importance values of a layer's weights after task 1 and after task {tasks}, each "
             f"divided by its maximum; in one dimension the Fréchet distance is the 2-Wasserstein distance, computed "
             f"exactly from the sorted values (lower: the last task's importance looks like the first's). Weighted "
             f"change: Σ Ω₁ (θ_{tasks} − θ₁)², the first task's penalty (eq. 5 without λ) at the last parameters; "
             f"change: the unweighted Σ (θ_{tasks} − θ₁)². "
             f"Mean and std over seeds; every trial in `parameter_analysis.csv`.", "",
             summary.to_markdown(index=False, floatfmt=".4g"), ""]
    weights = long.groupby(["method", "layer"], sort=False)[matched].agg(["mean", "std"]).reset_index()
    weights.columns = ["method", "layer", *[f"{c}_{s}" for c in matched for s in ("mean", "std")]]
    weights["method"] = weights["method"].map(display_name)
    weights.to_csv(out / "parameter_per_weight.csv", index=False)
    lines += ["Weight by weight (matched by position, not sorted; mean and std over seeds): Spearman's rank "
              "correlation of Ω₁ and Ω_T (do the same weights stay important?), the RMS difference of the two "
              "normalised importances weight by weight, Spearman's correlation of Ω₁ and |θ_T − θ₁| (negative: the "
              "weights task 1 needs moved least, Figure 8's claim), and the mean |θ_T − θ₁| of the 10% most important "
              "weights by Ω₁ against the less important half. The weighted change above uses the same Ω₁ that "
              "SPP's penalty weights, so SPP is smallest there by construction; the rank correlations of Ω are not.",
              "", weights.to_markdown(index=False, floatfmt=".3g"), ""]
    for title, path in [("Figure 7(b)", similarity), ("Figure 7(c)", change), ("Figure 8", heatmaps)]:
        if path is not None:
            lines += [f"![{title}]({path.name}) ([PDF]({path.with_suffix('.pdf').name}))", ""]
    return lines

"""Regularisers against fine-tuning at the same learning rate, and Figure 4's claims one by one.

A regulariser is only worth its λ where it beats fine-tuning trained alike: same learning rate,
same seeds (so the same initialisation and data order), same budget. Both tables pair seeds
(each seed once) and word every verdict by the rules of :mod:`analysis.inference`: a 95% t
interval of method(seed) − fine-tuning(seed), Holm's correction within the table, "above/below"
only where the adjusted interval excludes 0, "equivalent" only inside the margin, otherwise "not
separated" with the interval. Where fine-tuning itself forgets less than ``LITTLE_FORGETTING``
(|BWT|), the table says that the setting cannot separate methods: there is nothing to protect.

Figure 4 (section 4.2.3) claims, for SPP on its benchmark, that at λ = 0.01 the method is almost
the same as SGD (so as poor as fine-tuning), that 0.1 greatly improves on it, that ACC is stable
for λ in 0.5–4 and best at 4. :func:`figure4_claims` grades each on any sweep with a λ grid:
confirmed, refuted (the interval excludes the claim) or not settled at n seeds.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from spp_sweep import trial_files
from spp_sweep.results.tables import config_label

from .inference import (
    ALPHA,
    MARGIN,
    Difference,
    at_level,
    claim,
    holm,
    interval_text,
    paired,
    per_seed,
    power_note,
    verdict,
)

__all__ = ["ALPHA", "BAND", "LITTLE_FORGETTING", "compare_sweeps", "comparing_tables", "figure4_claims",
           "report_phases", "versus_finetune", "versus_method"]

LITTLE_FORGETTING = 0.01  # |BWT| of fine-tuning below one point: no forgetting for a method to prevent
BAND = (0.5, 4.0)  # the paper's stable λ band (Figure 4)
PAPER_BEST = 4.0  # "best at λ = 4" (Figure 4)


def _paired(ours: pd.DataFrame, reference: pd.DataFrame, column: str) -> Difference:
    """ours − reference over the seeds both finished (each seed once), with its 95% interval."""
    return paired(per_seed(ours, column), per_seed(reference, column))


def _same_lr(trials: pd.DataFrame, lr: float | None) -> pd.DataFrame:
    if lr is None or "lr" not in trials or trials["lr"].isna().all():
        return trials
    return trials[np.isclose(trials["lr"].astype(float), float(lr))]


def _fmt(value: float, std: float = math.nan, scale: float = 100.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{scale * value:+.2f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.2f}"


def _diff_text(d: Difference) -> str:
    """``+1.23 [+0.10, +2.36]``: the mean difference in points and its interval."""
    return "n/a" if math.isnan(d.mean) else f"{100 * d.mean:+.2f} {interval_text(d)}"


def versus_finetune(trials: pd.DataFrame, best: pd.DataFrame,
                    margin: float = MARGIN) -> tuple[pd.DataFrame, list[str]]:
    """Each selected configuration against fine-tuning at its learning rate; plus the notes
    (fine-tuning's own forgetting, and where it is too small to separate anything).

    The table's rows are one family: Holm's correction over its ACC differences, and apart over
    its BWT differences."""
    tuned = trials[trials["method"] == "finetune"]
    if tuned.empty:
        return pd.DataFrame(), ["No fine-tuning trials: nothing to compare the regularisers with."]
    compared, notes = [], []
    for _, row in best.iterrows():
        if row["method"] in ("finetune", "joint"):
            continue
        lr = row.get("lr") if "lr" in row and not pd.isna(row.get("lr")) else None
        mine = trials[(trials["method"] == row["method"]) & (trials["config"] == row["config"])] \
            if "config" in trials else trials[trials["method"] == row["method"]]
        reference = _same_lr(tuned, lr)
        if reference.empty:
            continue
        compared.append((row, lr, _paired(mine, reference, "acc"), _paired(mine, reference, "bwt")))
    accs = holm([c[2] for c in compared])
    bwts = holm([c[3] for c in compared])
    rows = []
    for (row, lr, _, _), acc, bwt in zip(compared, accs, bwts, strict=True):
        rows.append({"method": row["method"], "configuration": row["config"] or "(nothing searched)",
                     "fine-tuning lr": lr if lr is not None else "as the study",
                     "ΔACC (points)": _diff_text(acc), "p (ACC, Holm)": _p(acc.p_adjusted),
                     "ΔBWT (points)": _diff_text(bwt), "p (BWT, Holm)": _p(bwt.p_adjusted),
                     "seeds paired": acc.n, "ACC vs fine-tuning": verdict(acc, margin),
                     "smallest detectable ΔACC": _points(acc.detectable())})
    finished = tuned[tuned["status"] == "finished"]
    if len(finished):
        forgetting = float(finished["bwt"].mean())
        notes.append(f"Fine-tuning's own BWT here: {100 * forgetting:+.2f} points (mean over {len(finished)} runs).")
        if abs(forgetting) < LITTLE_FORGETTING:
            notes.append(f"**Fine-tuning forgets less than {100 * LITTLE_FORGETTING:.0f} point here (|BWT|): this "
                         "setting cannot separate the regularisers from it or from each other.**")
    return pd.DataFrame(rows), notes


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else (f"{value:.3f}" if value >= 0.001 else "<0.001")


def _points(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def figure4_claims(trials: pd.DataFrame, method: str = "spp", penalty_step: str | None = None,
                   margin: float = MARGIN) -> pd.DataFrame:
    """Figure 4's claims on this sweep: one graded row per claim.

    ``trials``: one search phase's trials (``lam`` searched for ``method``, fine-tuning beside).
    Each claim is its own test at 95% (Holm within the claims that compare several λ); the best λ
    is chosen on validation ACC where the sweep held a validation split out. Rows whose λ the
    sweep did not run say so.
    """
    ours = trials[(trials["method"] == method) & trials["lam"].notna()] if "lam" in trials else trials.iloc[0:0]
    if penalty_step is not None and "penalty_step" in ours:
        ours = ours[ours["penalty_step"] == penalty_step]
    tuned = trials[trials["method"] == "finetune"]
    if ours.empty:
        return pd.DataFrame()
    lams = np.sort(ours["lam"].astype(float).unique())

    def at(value: float) -> pd.DataFrame:
        return ours[np.isclose(ours["lam"].astype(float), value)]

    def mean_acc(frame: pd.DataFrame) -> float:
        done = frame[frame["status"] == "finished"]
        return float(done["acc"].mean()) if len(done) else math.nan

    rows = []

    def add(claim_text: str, measured: str, result: str) -> None:
        rows.append({"claim (paper, Figure 4)": claim_text, "measured here": measured, "verdict": result})

    poor = "λ = 0.01 is almost the same as SGD (as poor as fine-tuning)"
    greatly = "λ = 0.1 greatly improves on 0.01 (by more than the margin)"
    for value, text in ((0.01, poor), (0.1, greatly)):
        if not len(at(value)):
            add(text, f"λ = {value:g} was not run", "not testable here")
    if len(at(0.01)) and len(tuned):
        d = _paired(at(0.01), tuned, "acc")
        add(poor, f"ACC {100 * mean_acc(at(0.01)):.2f}; minus fine-tuning {_diff_text(d)} points",
            claim(d, "equivalent", margin=margin))
    elif len(at(0.01)):
        add(poor, "no fine-tuning trials to compare with", "not testable here")
    if len(at(0.01)) and len(at(0.1)):
        d = _paired(at(0.1), at(0.01), "acc")
        add(greatly, f"ACC {100 * mean_acc(at(0.1)):.2f} vs {100 * mean_acc(at(0.01)):.2f}: {_diff_text(d)} points",
            claim(d, "above", threshold=margin, margin=margin))
    band = ours[(ours["lam"].astype(float) >= BAND[0]) & (ours["lam"].astype(float) <= BAND[1])]
    if len(band):
        rows.append(_stability_row(band, margin))
        if len(tuned):
            d = _band_vs(band, tuned)
            add(f"λ in {BAND[0]:g}–{BAND[1]:g} beats fine-tuning",
                f"{_diff_text(d)} points, each seed's mean over the band's λ minus its fine-tuning",
                claim(d, "above", margin=margin))
    rows.append(_best_row(ours, lams, at))
    return pd.DataFrame(rows)


def _stability_row(band: pd.DataFrame, margin: float) -> dict[str, str]:
    """"Stable for λ in 0.5–4": every λ of the band equivalent (within ±margin) to the band's best,
    each an interval of paired seeds; refuted where a λ diverged or lies outside the margin."""
    text = f"ACC is stable for λ in {BAND[0]:g}–{BAND[1]:g} (every λ within ±{100 * margin:.2g} of the best)"
    done = band[band["status"] == "finished"]
    means = done.groupby("lam")["acc"].mean()
    diverged = int((band["status"] == "diverged").sum())
    if len(means) < 2:
        return {"claim (paper, Figure 4)": text, "measured here": f"{len(means)} λ of the band finished",
                "verdict": "not testable here (fewer than two λ of the band finished)"}
    top = float(means.idxmax())
    others = [float(v) for v in means.index if not math.isclose(float(v), top)]
    diffs = holm([_paired(band[np.isclose(band["lam"].astype(float), v)],
                          band[np.isclose(band["lam"].astype(float), top)], "acc") for v in others])
    # "every λ equivalent" is an intersection of tests, each at its own level: no correction
    plain = [at_level(d, 1 - ALPHA) for d in diffs]
    # "a λ more than the margin below the best" is m tests, one per λ: Bonferroni's 1 − α/m
    corrected = [replace(at_level(d, 1 - ALPHA / len(diffs)), correction="Bonferroni") for d in diffs]
    # the page shows the interval its verdict rests on: every plain 95% interval inside the margin
    # confirms; a Bonferroni interval wholly below it refutes; otherwise the interval that crosses it
    farthest = max(range(len(diffs)), key=lambda i: max(abs(plain[i].low), abs(plain[i].high)))
    below = [d for d in corrected if d.high <= -margin]
    if diverged:
        shown, result = corrected[farthest], f"refuted: {diverged} run{'s' * (diverged != 1)} diverged inside the band"
    elif all(-margin < d.low and d.high < margin for d in plain):
        shown, result = plain[farthest], f"confirmed: every λ within ±{100 * margin:.2g} point of the best"
    elif below:
        shown = max(below, key=lambda d: d.high)
        result = f"refuted: a λ lies more than {100 * margin:.2g} point below the best"
    else:
        shown = plain[farthest]
        result = f"not settled at {shown.n} seeds; {power_note(shown)}" if shown.n > 1 else \
            "not settled (1 seed: no interval)"
    # several λ and no correction shown: say why (each must pass alone, an intersection of tests)
    how = " (95% for each λ: every one must lie inside the margin)" \
        if len(diffs) > 1 and shown.correction != "Bonferroni" and shown.n > 1 else ""
    measured = (f"mean ACC {100 * means.min():.2f}–{100 * means.max():.2f} over {len(means)} values "
                f"(best λ = {top:g}); the farthest λ minus the best: {_diff_text(shown)}{how} points; "
                f"{diverged} diverged run{'s' * (diverged != 1)}")
    return {"claim (paper, Figure 4)": text, "measured here": measured, "verdict": result}


def _best_row(ours: pd.DataFrame, lams: np.ndarray, at) -> dict[str, str]:  # noqa: ANN001
    """"Best at λ = 4": the best λ on validation ACC (test ACC where no validation split was held
    out), with the λ not separated from it (paired seeds, Holm over the other λ)."""
    text = f"ACC is best at λ = {PAPER_BEST:g}"
    column = "val_acc" if "val_acc" in ours and ours["val_acc"].notna().any() else "acc"
    done = ours[ours["status"] == "finished"]
    means = done.groupby("lam")[column].mean()
    if not len(at(PAPER_BEST)) or len(means) < 2:
        why = f"λ = {PAPER_BEST:g} not run" if not len(at(PAPER_BEST)) else "no other λ finished"
        best = f"best {'validation' if column == 'val_acc' else 'test'} ACC at λ = {float(means.idxmax()):g}" \
            if len(means) else "no λ finished"
        return {"claim (paper, Figure 4)": text, "measured here": f"{best}; λ run: {', '.join(f'{v:g}' for v in lams)}",
                "verdict": f"not testable here ({why})"}
    top = float(means.idxmax())
    others = [float(v) for v in means.index if not math.isclose(float(v), top)]
    diffs = holm([_paired(at(v), at(top), column) for v in others])
    close = [top] + [v for v, d in zip(others, diffs, strict=True) if not d.separated]
    test_acc = float(done[np.isclose(done["lam"].astype(float), top)]["acc"].mean())
    split = "validation" if column == "val_acc" else "test (no validation split held out)"
    measured = (f"best on {split} ACC at λ = {top:g} (test ACC {100 * test_acc:.2f}); not separated from it "
                f"(Holm over {len(others)}): λ = {', '.join(f'{v:g}' for v in sorted(close))}")
    four = next((d for v, d in zip(others, diffs, strict=True) if math.isclose(v, PAPER_BEST)), None)
    if math.isclose(top, PAPER_BEST):
        result = "confirmed: every other λ below it" if len(close) == 1 else \
            f"not settled at {diffs[0].n} seeds: λ = {PAPER_BEST:g} is best but not separated from " + \
            ", ".join(f"{v:g}" for v in sorted(close) if not math.isclose(v, PAPER_BEST))
    elif four is not None and four.separated:
        result = f"refuted: best at λ = {top:g}, λ = {PAPER_BEST:g} below it {interval_text(four)}"
    else:
        result = f"not settled at {diffs[0].n} seeds: best at λ = {top:g}, λ = {PAPER_BEST:g} not separated from it"
    return {"claim (paper, Figure 4)": text, "measured here": measured, "verdict": result}


def _band_vs(band: pd.DataFrame, tuned: pd.DataFrame) -> Difference:
    """The band's mean ACC per seed (over its λ values) minus fine-tuning's, paired by seed."""
    mine = band[band["status"] == "finished"].groupby("seed")["acc"].mean().rename("acc").reset_index()
    mine["status"] = "finished"
    return _paired(mine, tuned, "acc")


def compare_sweeps(sweeps: list[tuple[str, str]], method: str = "spp", metric: str = "val_acc",
                   margin: float = MARGIN) -> pd.DataFrame:
    """One row per sweep (an ablation's variants, each a (label, folder)): ``method``'s selected
    configuration by ``metric``, its test ACC/BWT, fine-tuning's under the same settings, and the
    paired difference (seeds paired, each seed once; fine-tuning at the selected configuration's
    learning rate). The rows are one family: Holm's correction over their ACC differences."""
    from spp_sweep.results.load import load_trials
    from spp_sweep.results.tables import best_configs, config_label, one_per_seed

    found: list[tuple[str, tuple[pd.Series, pd.DataFrame, pd.DataFrame, Difference, Difference] | None]] = []
    for label, folder in sweeps:
        trials = load_trials(folder)
        trials = one_per_seed(trials.assign(config=trials.apply(config_label, axis=1))) if len(trials) else trials
        ours = trials[trials["method"] == method] if len(trials) else trials
        best = best_configs(ours, metric) if len(ours) else pd.DataFrame()
        if best.empty:
            found.append((label, None))
            continue
        chosen = best.iloc[0]
        lr = chosen.get("lr") if "lr" in chosen and not pd.isna(chosen.get("lr")) else None
        mine = ours[ours["config"] == chosen["config"]]
        tuned = _same_lr(trials[trials["method"] == "finetune"], lr)
        found.append((label, (chosen, ours, tuned, _paired(mine, tuned, "acc"), _paired(mine, tuned, "bwt"))))
    kept = [parts for _, parts in found if parts is not None]
    accs, bwts = iter(holm([k[3] for k in kept])), iter(holm([k[4] for k in kept]))
    rows: list[dict[str, object]] = []
    for label, parts in found:
        if parts is None:
            rows.append({"variant": label, "selected": f"no finished {method} trial"})
            continue
        chosen, ours, tuned, _, _ = parts
        acc, bwt = next(accs), next(bwts)
        done = tuned[tuned["status"] == "finished"]
        diverged = int((ours["status"] == "diverged").sum())
        rows.append({
            "variant": label, "selected": chosen["config"] or "(nothing searched)",
            f"{method} ACC": _fmt(chosen["acc_mean"], chosen["acc_std"]).lstrip("+"),
            f"{method} BWT": _fmt(chosen["bwt_mean"], chosen["bwt_std"]),
            "fine-tuning ACC": _fmt(float(done["acc"].mean()), float(done["acc"].std(ddof=1))).lstrip("+")
            if len(done) else "n/a",
            "fine-tuning BWT": _fmt(float(done["bwt"].mean()), float(done["bwt"].std(ddof=1))) if len(done) else "n/a",
            "ΔACC": _diff_text(acc), "p (ACC, Holm)": _p(acc.p_adjusted), "ΔBWT": _diff_text(bwt),
            "p (BWT, Holm)": _p(bwt.p_adjusted), "seeds paired": acc.n,
            "ACC vs fine-tuning": verdict(acc, margin), f"{method} runs diverged": f"{diverged} of {len(ours)}",
        })
    return pd.DataFrame(rows)


def versus_method(trials: pd.DataFrame, best: pd.DataFrame, reference: str = "spp",
                  margin: float = MARGIN) -> pd.DataFrame:
    """``reference``'s selected configuration minus every other method's (Tables 2/3's ranking),
    seeds paired, each seed once; one family, Holm's correction over its ACC differences and apart
    over its BWT differences. Fine-tuning, joint training and the SGD variants are left to
    :func:`versus_finetune` and the paper's table."""
    chosen = best[best["method"] == reference]
    others = best[~best["method"].isin([reference, "finetune", "joint", "sgd", "sgd_frozen"])]
    if chosen.empty or others.empty:
        return pd.DataFrame()

    def runs(row: pd.Series) -> pd.DataFrame:
        mine = trials[trials["method"] == row["method"]]
        return mine[mine["config"] == row["config"]] if "config" in trials else mine

    ours = runs(chosen.iloc[0])
    accs = holm([_paired(ours, runs(row), "acc") for _, row in others.iterrows()])
    bwts = holm([_paired(ours, runs(row), "bwt") for _, row in others.iterrows()])
    out = []
    for (_, row), acc, bwt in zip(others.iterrows(), accs, bwts, strict=True):
        out.append({"method": row["method"], "configuration": row["config"] or "(nothing searched)",
                    f"{reference} − method ΔACC (points)": _diff_text(acc), "p (ACC, Holm)": _p(acc.p_adjusted),
                    f"{reference} − method ΔBWT (points)": _diff_text(bwt), "p (BWT, Holm)": _p(bwt.p_adjusted),
                    "seeds paired": acc.n, f"{reference} vs method (ACC)": verdict(acc, margin),
                    f"{reference} vs method (BWT)": verdict(bwt, margin),
                    "smallest detectable ΔACC": _points(acc.detectable())})
    return pd.DataFrame(out)


def report_phases(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(compared, searched): the trials a report's tables compare and those its search ran.

    Compared: phase ``evaluate`` where the selection protocol has one (the chosen configurations
    on the data they are meant for), else the final re-runs, else the whole sweep. Searched: every
    phase but the selected ones (the final phase adds seeds at one configuration per method, which
    would weigh that point differently from its neighbours on a λ curve)."""
    phase = trials["phase"]
    evaluated = (phase == trial_files.EVALUATE_PHASE).any()
    compared = trials[phase == (trial_files.EVALUATE_PHASE if evaluated else trial_files.FINAL_PHASE)] \
        if (phase == trial_files.FINAL_PHASE).any() else trials
    search = ~phase.isin(trial_files.SELECTED_PHASES)
    searched = trials[search] if search.any() else trials[phase != trial_files.EVALUATE_PHASE]
    return compared, searched


def comparing_tables(compared: pd.DataFrame, best: pd.DataFrame, searched: pd.DataFrame,
                     margin: float = MARGIN) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every table of a report that compares, by file stem, and the notes under vs_finetune.

    ``vs_finetune`` and ``versus_spp`` compare the selected configurations (``compared``,
    ``best``); ``figure4_claims[_step]`` grade SPP's λ grid: the grid phase where there is one (a
    Bayesian phase mixes learning rates along λ), else every searched trial."""
    with_config = compared.assign(config=compared.apply(config_label, axis=1))
    tables: dict[str, pd.DataFrame] = {}
    table, notes = versus_finetune(with_config, best, margin)
    if len(table):
        tables["vs_finetune"] = table
    ranked = versus_method(with_config, best, "spp", margin)
    if len(ranked):
        tables["versus_spp"] = ranked
    on_grid = searched["phase"] == trial_files.GRID_PHASE
    grid = searched[on_grid] if on_grid.any() else searched
    steps = [None] if "penalty_step" not in grid else \
        sorted(grid.loc[grid["method"] == "spp", "penalty_step"].dropna().unique()) or [None]
    for step in steps:
        claims = figure4_claims(grid, "spp", step, margin)
        if len(claims):
            tables[f"figure4_claims{'_' + step if step and len(steps) > 1 else ''}"] = claims
    return tables, notes

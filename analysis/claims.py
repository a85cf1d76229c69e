"""Regularisers against fine-tuning at the same learning rate, and Figure 4's claims one by one.

A regulariser is only worth its λ where it beats fine-tuning trained alike: same learning rate,
same seeds (so the same initialisation and data order), same budget. Both tables here pair
seeds: a difference is method(seed) − fine-tuning(seed), its mean ± std over seeds, and a paired
t-test on the differences (scipy's ``ttest_rel``; p is NaN with fewer than two pairs). Where
fine-tuning itself forgets less than ``LITTLE_FORGETTING`` (|BWT|), the table says that the
setting cannot separate methods: there is nothing to protect.

Figure 4 (section 4.2.3) claims, for SPP on its benchmark, that λ = 0.01 is extremely poor, 0.1
greatly improves on it, ACC is stable for λ in 0.5–4 and best at 4. :func:`figure4_claims`
measures each on any sweep with a λ grid, and words the verdict from the numbers alone.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LITTLE_FORGETTING = 0.01  # |BWT| of fine-tuning below one point: no forgetting for a method to prevent
ALPHA = 0.05  # the level at which a paired difference counts as separated
BAND = (0.5, 4.0)  # the paper's stable λ band (Figure 4)


def _paired(ours: pd.DataFrame, reference: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean, std and paired-t p of ours − reference over the seeds both finished."""
    left = ours[ours["status"] == "finished"].groupby("seed")[column].mean()
    right = reference[reference["status"] == "finished"].groupby("seed")[column].mean()
    both = left.index.intersection(right.index)
    diff = (left[both] - right[both]).dropna()
    p = math.nan
    if len(diff) > 1 and float(diff.std(ddof=1)) > 1e-12:
        import warnings

        from scipy import stats

        with warnings.catch_warnings():  # near-equal differences: scipy warns of precision, p stays right
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(left[diff.index], right[diff.index]).pvalue)
    elif len(diff) > 1:
        p = 0.0 if float(diff.abs().max()) > 0 else 1.0
    return {"mean": float(diff.mean()) if len(diff) else math.nan,
            "std": float(diff.std(ddof=1)) if len(diff) > 1 else math.nan, "p": p, "n": len(diff)}


def _same_lr(trials: pd.DataFrame, lr: float | None) -> pd.DataFrame:
    if lr is None or "lr" not in trials or trials["lr"].isna().all():
        return trials
    return trials[np.isclose(trials["lr"].astype(float), float(lr))]


def _fmt(value: float, std: float = math.nan, scale: float = 100.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{scale * value:+.2f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.2f}"


def verdict(diff: dict[str, float]) -> str:
    """'above' / 'below' / 'tied' (p ≥ ALPHA or fewer than two pairs), from a paired difference."""
    if diff["n"] < 2 or math.isnan(diff["p"]) or diff["p"] >= ALPHA:
        return "tied"
    return "above" if diff["mean"] > 0 else "below"


def versus_finetune(trials: pd.DataFrame, best: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each selected configuration against fine-tuning at its learning rate; plus the notes
    (fine-tuning's own forgetting, and where it is too small to separate anything)."""
    tuned = trials[trials["method"] == "finetune"]
    if tuned.empty:
        return pd.DataFrame(), ["No fine-tuning trials: nothing to compare the regularisers with."]
    rows, notes = [], []
    for _, row in best.iterrows():
        if row["method"] in ("finetune", "joint"):
            continue
        lr = row.get("lr") if "lr" in row and not pd.isna(row.get("lr")) else None
        mine = trials[(trials["method"] == row["method"]) & (trials["config"] == row["config"])] \
            if "config" in trials else trials[trials["method"] == row["method"]]
        reference = _same_lr(tuned, lr)
        if reference.empty:
            continue
        acc, bwt = _paired(mine, reference, "acc"), _paired(mine, reference, "bwt")
        rows.append({"method": row["method"], "configuration": row["config"] or "(nothing searched)",
                     "fine-tuning lr": lr if lr is not None else "as the study",
                     "ΔACC (points)": _fmt(acc["mean"], acc["std"]), "p (ACC)": _p(acc["p"]),
                     "ΔBWT (points)": _fmt(bwt["mean"], bwt["std"]), "p (BWT)": _p(bwt["p"]),
                     "seeds paired": acc["n"], "ACC vs fine-tuning": verdict(acc)})
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


def figure4_claims(trials: pd.DataFrame, method: str = "spp", penalty_step: str | None = None) -> pd.DataFrame:
    """Figure 4's claims on this sweep: one measured row per claim, with its verdict.

    ``trials``: one grid phase's trials (``lam`` searched for ``method``, fine-tuning beside).
    Rows whose λ the sweep did not run say so.
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

    def add(claim: str, measured: str, result: str) -> None:
        rows.append({"claim (paper, Figure 4)": claim, "measured here": measured, "verdict": result})

    for value, claim in ((0.01, "λ = 0.01 is extremely poor"), (0.1, "λ = 0.1 greatly improves on 0.01")):
        if not len(at(value)):
            add(claim, f"λ = {value:g} was not run", "not testable here")
    if len(at(0.01)) and len(tuned):
        diff = _paired(at(0.01), tuned, "acc")
        add("λ = 0.01 is extremely poor", f"ACC {100 * mean_acc(at(0.01)):.2f}; vs fine-tuning "
            f"{_fmt(diff['mean'], diff['std'])} points (p {_p(diff['p'])})",
            "refuted: no worse than fine-tuning" if verdict(diff) != "below" else "confirmed: below fine-tuning")
    if len(at(0.01)) and len(at(0.1)):
        diff = _paired(at(0.1), at(0.01), "acc")
        confirmed = verdict(diff) == "above" and diff["mean"] > 0.01
        add("λ = 0.1 greatly improves on 0.01", f"ACC {100 * mean_acc(at(0.1)):.2f} vs {100 * mean_acc(at(0.01)):.2f}: "
            f"{_fmt(diff['mean'], diff['std'])} points (p {_p(diff['p'])})",
            "confirmed" if confirmed else ("refuted: tied" if verdict(diff) == "tied" else
                                           "refuted: not by a point or more" if diff["mean"] > 0 else "refuted: worse"))
    band = ours[(ours["lam"].astype(float) >= BAND[0]) & (ours["lam"].astype(float) <= BAND[1])]
    if len(band):
        means = band[band["status"] == "finished"].groupby("lam")["acc"].mean()
        spread = float(means.max() - means.min()) if len(means) else math.nan
        noise = float(band[band["status"] == "finished"].groupby("lam")["acc"].std(ddof=1).mean())
        diverged = int((band["status"] == "diverged").sum())
        stable = diverged == 0 and not math.isnan(spread) and spread <= max(2 * noise, 0.005)
        band_diff = _band_vs(band, tuned) if len(tuned) else None
        inert = band_diff is not None and verdict(band_diff) == "tied"
        add(f"ACC is stable for λ in {BAND[0]:g}–{BAND[1]:g}",
            f"mean ACC {100 * means.min():.2f}–{100 * means.max():.2f} "
            f"over {len(means)} values (spread {100 * spread:.2f} points; seeds' std {100 * noise:.2f}); "
            f"{diverged} diverged runs",
            "not testable here (fewer than two λ of the band finished)" if len(means) < 2 else
            ("confirmed, but only as fine-tuning is stable: the band does not beat it" if inert else "confirmed")
            if stable else "refuted")
        if band_diff is not None:
            diff = band_diff
            add(f"λ in {BAND[0]:g}–{BAND[1]:g} beats fine-tuning", f"{_fmt(diff['mean'], diff['std'])} points, seeds "
                f"paired over every λ of the band (p {_p(diff['p'])})",
                {"above": "confirmed", "tied": "refuted: tied (not separated)",
                 "below": "refuted: below"}[verdict(diff)])
    finished = ours[ours["status"] == "finished"].groupby("lam")["acc"].mean()
    if len(finished):
        best = float(finished.idxmax())
        add("ACC is best at λ = 4", f"best mean test ACC at λ = {best:g} ({100 * finished.max():.2f}); "
            f"λ run: {', '.join(f'{v:g}' for v in lams)}",
            "not testable here (λ = 4 not run)" if not len(at(4.0)) else
            "not testable here (no other λ finished)" if len(finished) < 2 else
            ("confirmed" if math.isclose(best, 4.0) else f"refuted: best at λ = {best:g}"))
    return pd.DataFrame(rows)


def _band_vs(band: pd.DataFrame, tuned: pd.DataFrame) -> dict[str, float]:
    """The band's mean ACC per seed (over its λ values) minus fine-tuning's, paired by seed."""
    mine = band[band["status"] == "finished"].groupby("seed")["acc"].mean().rename("acc").reset_index()
    mine["status"] = "finished"
    return _paired(mine, tuned, "acc")


def compare_sweeps(sweeps: list[tuple[str, str]], method: str = "spp", metric: str = "val_acc") -> pd.DataFrame:
    """One row per sweep (an ablation's variants, each a (label, folder)): ``method``'s selected
    configuration by ``metric``, its test ACC/BWT, fine-tuning's under the same settings, and the
    paired difference (seeds paired; fine-tuning at the selected configuration's learning rate)."""
    from .load import load_trials
    from .tables import best_configs, config_label

    rows = []
    for label, folder in sweeps:
        trials = load_trials(folder)
        trials = trials.assign(config=trials.apply(config_label, axis=1)) if len(trials) else trials
        ours = trials[trials["method"] == method] if len(trials) else trials
        best = best_configs(ours, metric) if len(ours) else pd.DataFrame()
        if best.empty:
            rows.append({"variant": label, "selected": f"no finished {method} trial"})
            continue
        chosen = best.iloc[0]
        lr = chosen.get("lr") if "lr" in chosen and not pd.isna(chosen.get("lr")) else None
        mine = ours[ours["config"] == chosen["config"]]
        tuned = _same_lr(trials[trials["method"] == "finetune"], lr)
        done = tuned[tuned["status"] == "finished"]
        acc, bwt = _paired(mine, tuned, "acc"), _paired(mine, tuned, "bwt")
        diverged = int((ours["status"] == "diverged").sum())
        rows.append({
            "variant": label, "selected": chosen["config"] or "(nothing searched)",
            f"{method} ACC": _fmt(chosen["acc_mean"], chosen["acc_std"]).lstrip("+"),
            f"{method} BWT": _fmt(chosen["bwt_mean"], chosen["bwt_std"]),
            "fine-tuning ACC": _fmt(float(done["acc"].mean()), float(done["acc"].std(ddof=1))).lstrip("+")
            if len(done) else "n/a",
            "fine-tuning BWT": _fmt(float(done["bwt"].mean()), float(done["bwt"].std(ddof=1))) if len(done) else "n/a",
            "ΔACC": _fmt(acc["mean"], acc["std"]), "p (ACC)": _p(acc["p"]), "ΔBWT": _fmt(bwt["mean"], bwt["std"]),
            "p (BWT)": _p(bwt["p"]), f"{method} runs diverged": f"{diverged} of {len(ours)}",
        })
    return pd.DataFrame(rows)

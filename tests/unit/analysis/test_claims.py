"""analysis/claims.py against hand computations: paired differences with fine-tuning and
Figure 4's claims graded by their intervals (three seeds: Student's t at 2 df by its closed form,
see test_inference.py)."""

from __future__ import annotations

import math

import pandas as pd

from analysis.claims import figure4_claims, versus_finetune
from analysis.tables import best_configs, config_label, one_per_seed


def rows(method: str, lam: float | None, accs: list[float], bwts: list[float] | None = None,
         vals: list[float] | None = None, phase: str = "grid", first_seed: int = 0) -> list[dict]:
    return [{"method": method, "lam": lam, "seed": first_seed + i, "acc": acc,
             "bwt": (bwts or [-0.2] * len(accs))[i], "val_acc": (vals or accs)[i], "status": "finished",
             "searched": "lam" if lam is not None else "", "phase": phase,
             "penalty_step": "explicit" if lam is not None else None, "seconds": 1.0}
            for i, acc in enumerate(accs)]


def frame(*parts: list[dict]) -> pd.DataFrame:
    trials = pd.DataFrame([r for part in parts for r in part])
    return trials.assign(config=trials.apply(config_label, axis=1))


def t2_p(diffs: list[float]) -> float:
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t = mean / (std / math.sqrt(3))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def verdicts(trials: pd.DataFrame) -> pd.Series:
    return figure4_claims(trials).set_index("claim (paper, Figure 4)")["verdict"]


POOR = "λ = 0.01 is almost the same as SGD (as poor as fine-tuning)"
GREATLY = "λ = 0.1 greatly improves on 0.01 (by more than the margin)"
STABLE = "ACC is stable for λ in 0.5–4 (every λ within ±1 of the best)"
BEATS = "λ in 0.5–4 beats fine-tuning"
BEST = "ACC is best at λ = 4"


def test_versus_finetune_pairs_seeds_by_hand() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.72, 0.74], [-0.30, -0.28, -0.26]),
                   rows("spp", 4.0, [0.80, 0.81, 0.85], [-0.10, -0.12, -0.08]),
                   rows("spp", 0.01, [0.70, 0.72, 0.74]))
    table, notes = versus_finetune(trials, best_configs(trials, "val_acc"))
    spp = table.set_index("method").loc["spp"]
    # per seed by hand: 0.10, 0.09, 0.11; t(0.975, 2 df) = 4.3027; half-width 4.3027 · 0.01 / √3
    assert spp["ΔACC (points)"] == "+10.00 [+7.52, +12.48]"
    assert spp["p (ACC, Holm)"] == f"{t2_p([0.10, 0.09, 0.11]):.3f}" and spp["ACC vs fine-tuning"] == "above"
    assert spp["seeds paired"] == 3
    assert notes[0].startswith("Fine-tuning's own BWT here: -28.00 points")
    little = frame(rows("finetune", None, [0.98, 0.98], [-0.004, -0.004]), rows("spp", 1.0, [0.98, 0.981]))
    _, notes = versus_finetune(little, best_configs(little, "val_acc"))
    assert any("cannot separate" in note for note in notes)


def test_a_wide_difference_is_not_separated_and_never_tied() -> None:
    """+8.3 ± 7.2 points at three seeds (issue 39's EWC row) is 'not separated', with its interval."""
    trials = frame(rows("finetune", None, [0.60, 0.60, 0.60]), rows("ewc", 1.0, [0.68, 0.75, 0.62]))
    row = versus_finetune(trials, best_configs(trials, "val_acc"))[0].iloc[0]
    assert row["ACC vs fine-tuning"].startswith("not separated [") and "tied" not in row["ACC vs fine-tuning"]
    assert row["smallest detectable ΔACC"] != "n/a"


def test_figure4_claims_are_graded_by_their_intervals() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.71, 0.72]),
                   rows("spp", 0.01, [0.70, 0.711, 0.72]),  # fine-tuning within 0.1 point: the paper's reading
                   rows("spp", 0.1, [0.705, 0.712, 0.73]),  # +0.5 points, interval about [−0.6, +1.6]
                   *[rows("spp", lam, [0.80 + k, 0.81 + k, 0.82 + k])
                     for k, lam in ((0.0, 0.5), (0.001, 1.0), (0.002, 2.0), (0.003, 4.0))],
                   rows("spp", 12.0, [0.85, 0.86, 0.87]))
    claims = verdicts(trials)
    assert claims[POOR] == "confirmed: within ±1 point"
    assert claims[GREATLY].startswith("not settled at 3 seeds [")
    assert claims[STABLE].startswith("confirmed")
    assert claims[BEATS] == "confirmed"
    assert claims[BEST].startswith("refuted: best at λ = 12, λ = 4 below it")


def test_the_best_lambda_is_chosen_on_validation_not_test() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.71, 0.72]),
                   rows("spp", 4.0, [0.90, 0.91, 0.92], vals=[0.80, 0.81, 0.82]),  # best on test
                   rows("spp", 6.0, [0.85, 0.86, 0.87], vals=[0.85, 0.86, 0.87]))  # best on validation
    measured = figure4_claims(trials).set_index("claim (paper, Figure 4)").loc[BEST]
    assert measured["measured here"].startswith("best on validation ACC at λ = 6 (test ACC 86.00)")
    assert measured["verdict"].startswith("refuted: best at λ = 6")
    near = frame(rows("finetune", None, [0.70, 0.71, 0.72]), rows("spp", 4.0, [0.80, 0.81, 0.82]),
                 rows("spp", 6.0, [0.80, 0.82, 0.80]))  # 4 best, 6 not separated from it
    assert verdicts(near)[BEST].startswith("not settled at 3 seeds: λ = 4 is best but not separated from 6")


def test_a_band_level_with_fine_tuning_refutes_a_gain_and_a_wide_one_is_not_settled() -> None:
    trials = frame(rows("finetune", None, [0.61, 0.62, 0.63]),
                   *[rows("spp", lam, [0.61, 0.62, 0.631]) for lam in (0.5, 1.0, 2.0, 4.0)])
    claims = verdicts(trials)
    assert claims[STABLE].startswith("confirmed")
    assert claims[BEATS] == "refuted: equivalent within ±1 point"  # +0.03 [−0.11, +0.18]: no gain that matters
    wide = frame(rows("finetune", None, [0.61, 0.62, 0.63]),
                 *[rows("spp", lam, [0.60, 0.66, 0.63]) for lam in (0.5, 1.0, 2.0, 4.0)])
    assert verdicts(wide)[BEATS].startswith("not settled at 3 seeds [") and "tied" not in verdicts(wide)[BEATS]


def test_one_lambda_run_tests_neither_stability_nor_where_the_best_lies() -> None:
    """A study that runs SPP at its selected λ only (beside other methods) cannot confirm a flat
    band or a best λ: one value is flat and best by construction."""
    trials = frame(rows("finetune", None, [0.77, 0.78, 0.76]), rows("spp", 4.0, [0.88, 0.87, 0.885]))
    claims = verdicts(trials)
    assert claims[STABLE].startswith("not testable here")
    assert claims[BEST].startswith("not testable here")
    assert claims[BEATS] == "confirmed"
    missing = verdicts(frame(rows("finetune", None, [0.7, 0.7]), rows("spp", 1.0, [0.8, 0.8])))
    assert missing[POOR] == "not testable here" and missing[BEST] == "not testable here (λ = 4 not run)"


def test_a_diverged_lambda_inside_the_band_refutes_stability() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.71, 0.72]),
                   *[rows("spp", lam, [0.80, 0.81, 0.82]) for lam in (0.5, 1.0, 4.0)])
    trials.loc[(trials["lam"] == 4.0) & (trials["seed"] == 2), "status"] = "diverged"
    assert verdicts(trials)[STABLE] == "refuted: 1 run diverged inside the band"


def test_a_confirmed_band_shows_the_intervals_it_rests_on() -> None:
    """Every λ's own 95% interval inside ±1 point confirms (an intersection of tests needs no
    correction); the page shows that interval, not the Bonferroni one, which here crosses −1.

    By hand, the farthest λ's differences from the best, in points: −0.8, +0.1, −0.5, +0.2, −0.5;
    mean −0.30, std 0.4301; 95% at 4 df: ±2.7764·0.4301/√5 = ±0.534 → [−0.83, +0.23]; Bonferroni
    over the 3 other λ (t 3.9608 at 1 − 0.05/6): ±0.762 → [−1.06, +0.46], past −1."""
    best = [0.900, 0.900, 0.900, 0.900, 0.900]
    far = [0.892, 0.901, 0.895, 0.902, 0.895]
    trials = frame(rows("finetune", None, [0.70] * 5),
                   rows("spp", 2.0, best), rows("spp", 0.5, far),
                   rows("spp", 1.0, [0.899, 0.900, 0.899, 0.901, 0.899]),
                   rows("spp", 4.0, [0.898, 0.899, 0.900, 0.899, 0.898]))
    row = figure4_claims(trials).set_index("claim (paper, Figure 4)").loc[STABLE]
    assert row["verdict"] == "confirmed: every λ within ±1 point of the best"
    assert "-0.30 [-0.83, +0.23] (95% for each λ" in row["measured here"] and "Bonferroni" not in row["measured here"]
    drop = frame(rows("finetune", None, [0.70] * 5), rows("spp", 2.0, best),
                 rows("spp", 0.5, [0.850, 0.861, 0.855, 0.862, 0.855]),  # 4.7 points below, tight
                 rows("spp", 1.0, [0.899, 0.900, 0.899, 0.901, 0.899]))
    row = figure4_claims(drop).set_index("claim (paper, Figure 4)").loc[STABLE]
    assert row["verdict"] == "refuted: a λ lies more than 1 point below the best"
    assert "(Bonferroni, 2 tests)" in row["measured here"]


def test_each_seed_counts_once_where_two_phases_trained_it() -> None:
    """A sweep from before final seeds were new ones re-ran the grid's seeds in phase final:
    one row per (method, configuration, seed) is kept, the final phase's."""
    grid = rows("spp", 4.0, [0.80, 0.82, 0.84])
    again = rows("spp", 4.0, [0.80, 0.82, 0.84], phase="final")
    more = rows("spp", 4.0, [0.83, 0.85], phase="final", first_seed=3)
    kept = one_per_seed(frame(grid, again, more, rows("spp", 1.0, [0.7, 0.7, 0.7])))
    spp4 = kept[kept["lam"] == 4.0]
    assert sorted(spp4["seed"]) == [0, 1, 2, 3, 4] and set(spp4["phase"]) == {"final"}
    assert len(kept[kept["lam"] == 1.0]) == 3
    evaluated = one_per_seed(frame(grid, rows("spp", 4.0, [0.9, 0.9, 0.9], phase="evaluate")))
    assert len(evaluated) == 6  # phase evaluate trains on other data: its own experiment


def test_compare_sweeps_selects_per_variant_and_pairs_with_its_fine_tuning(monkeypatch) -> None:
    import spp_sweep.results.load
    from analysis.claims import compare_sweeps

    variants = {
        "preset": frame(rows("finetune", None, [0.60, 0.62, 0.61]), rows("spp", 1.0, [0.61, 0.63, 0.62]),
                        rows("spp", 12.0, [0.70, 0.74, 0.72])),
        "trunk_only": frame(rows("finetune", None, [0.60, 0.62, 0.61]), rows("spp", 1.0, [0.60, 0.62, 0.61]),
                            rows("spp", 1.0, [0.60, 0.62, 0.61], phase="final")),  # the same seeds again
    }
    monkeypatch.setattr(spp_sweep.results.load, "load_trials", lambda folder: variants[folder].drop(columns="config"))
    table = compare_sweeps([("preset", "preset"), ("trunk only", "trunk_only")]).set_index("variant")
    assert table.loc["preset", "selected"] == "lam=12"  # highest mean val_acc
    assert table.loc["preset", "ΔACC"].startswith("+11.00 [")  # per seed 0.10, 0.12, 0.11
    assert table.loc["preset", "spp ACC"] == "72.00 ± 2.00" and table.loc["preset", "fine-tuning ACC"] == "61.00 ± 1.00"
    assert table.loc["trunk only", "seeds paired"] == 3  # not 6: the final phase repeated the same seeds
    assert table.loc["trunk only", "ΔACC"].startswith("+0.00") and table.loc["trunk only", "p (ACC, Holm)"] == "1.000"
    assert table.loc["trunk only", "ACC vs fine-tuning"] == "equivalent within ±1 point"

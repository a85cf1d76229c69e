"""analysis/claims.py against hand computations: paired differences with fine-tuning and
Figure 4's claims worded from the numbers."""

from __future__ import annotations

import pandas as pd
from scipy import stats

from analysis.claims import figure4_claims, versus_finetune
from analysis.tables import best_configs, config_label


def rows(method: str, lam: float | None, accs: list[float], bwts: list[float] | None = None) -> list[dict]:
    return [{"method": method, "lam": lam, "seed": seed, "acc": acc, "bwt": (bwts or [-0.2] * len(accs))[seed],
             "val_acc": acc, "status": "finished", "searched": "lam" if lam is not None else "", "phase": "grid",
             "penalty_step": "explicit" if lam is not None else None, "seconds": 1.0}
            for seed, acc in enumerate(accs)]


def frame(*parts: list[dict]) -> pd.DataFrame:
    trials = pd.DataFrame([r for part in parts for r in part])
    return trials.assign(config=trials.apply(config_label, axis=1))


def test_versus_finetune_pairs_seeds_by_hand() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.72, 0.74], [-0.30, -0.28, -0.26]),
                   rows("spp", 4.0, [0.80, 0.81, 0.85], [-0.10, -0.12, -0.08]),
                   rows("spp", 0.01, [0.70, 0.72, 0.74]))
    best = best_configs(trials, "val_acc")
    table, notes = versus_finetune(trials, best)
    spp = table.set_index("method").loc["spp"]
    diffs = [0.10, 0.09, 0.11]  # per seed, by hand
    assert spp["ΔACC (points)"] == f"{100 * sum(diffs) / 3:+.2f} ± {100 * pd.Series(diffs).std():.2f}"
    p = stats.ttest_rel([0.80, 0.81, 0.85], [0.70, 0.72, 0.74]).pvalue
    assert spp["p (ACC)"] == f"{p:.3f}" and spp["ACC vs fine-tuning"] == ("above" if p < 0.05 else "tied")
    assert notes[0].startswith("Fine-tuning's own BWT here: -28.00 points")
    little = frame(rows("finetune", None, [0.98, 0.98], [-0.004, -0.004]), rows("spp", 1.0, [0.98, 0.981]))
    _, notes = versus_finetune(little, best_configs(little, "val_acc"))
    assert any("cannot separate" in note for note in notes)


def test_figure4_claims_are_worded_by_the_numbers() -> None:
    trials = frame(rows("finetune", None, [0.70, 0.71, 0.72]),
                   rows("spp", 0.01, [0.70, 0.71, 0.72]),  # exactly fine-tuning: not "extremely poor"
                   rows("spp", 0.1, [0.70, 0.712, 0.72]),  # not a greatly improved 0.01
                   *[rows("spp", lam, [0.80, 0.81, 0.82]) for lam in (0.5, 1.0, 2.0)],
                   rows("spp", 4.0, [0.79, 0.80, 0.81]), rows("spp", 12.0, [0.85, 0.86, 0.87]))
    claims = figure4_claims(trials).set_index("claim (paper, Figure 4)")["verdict"]
    assert claims["λ = 0.01 is extremely poor"].startswith("refuted")
    assert claims["λ = 0.1 greatly improves on 0.01"].startswith("refuted")
    assert claims["ACC is stable for λ in 0.5–4"] == "confirmed"
    assert claims["λ in 0.5–4 beats fine-tuning"] == "confirmed"
    assert claims["ACC is best at λ = 4"] == "refuted: best at λ = 12"
    missing = figure4_claims(frame(rows("finetune", None, [0.7, 0.7]), rows("spp", 1.0, [0.8, 0.8])))
    assert set(missing.set_index("claim (paper, Figure 4)").loc[
        ["λ = 0.01 is extremely poor", "ACC is best at λ = 4"], "verdict"]) == {"not testable here",
                                                                              "not testable here (λ = 4 not run)"}


def test_compare_sweeps_selects_per_variant_and_pairs_with_its_fine_tuning(monkeypatch) -> None:
    import analysis.load
    from analysis.claims import compare_sweeps

    variants = {
        "preset": frame(rows("finetune", None, [0.60, 0.62]), rows("spp", 1.0, [0.61, 0.63]),
                        rows("spp", 12.0, [0.70, 0.74])),
        "trunk_only": frame(rows("finetune", None, [0.60, 0.62]), rows("spp", 1.0, [0.60, 0.62])),
    }
    monkeypatch.setattr(analysis.load, "load_trials", lambda folder: variants[folder].drop(columns="config"))
    table = compare_sweeps([("preset", "preset"), ("trunk only", "trunk_only")]).set_index("variant")
    assert table.loc["preset", "selected"] == "lam=12"  # highest mean val_acc
    assert table.loc["preset", "ΔACC"] == f"{100 * 0.11:+.2f} ± {100 * pd.Series([0.10, 0.12]).std():.2f}"
    assert table.loc["preset", "spp ACC"] == "72.00 ± 2.83" and table.loc["preset", "fine-tuning ACC"] == "61.00 ± 1.41"
    assert table.loc["trunk only", "ΔACC"] == "+0.00 ± 0.00" and table.loc["trunk only", "p (ACC)"] == "1.000"


def test_a_stable_band_that_does_not_beat_fine_tuning_says_so() -> None:
    trials = frame(rows("finetune", None, [0.61, 0.62, 0.63]),
                   *[rows("spp", lam, [0.61, 0.62, 0.631]) for lam in (0.5, 1.0, 2.0, 4.0)])
    claims = figure4_claims(trials).set_index("claim (paper, Figure 4)")["verdict"]
    assert claims["ACC is stable for λ in 0.5–4"].startswith("confirmed, but only as fine-tuning is stable")
    assert claims["λ in 0.5–4 beats fine-tuning"].startswith("refuted: tied")


def test_one_lambda_run_tests_neither_stability_nor_where_the_best_lies() -> None:
    """A study that runs SPP at its selected λ only (beside other methods) cannot confirm a flat
    band or a best λ: one value is flat and best by construction."""
    trials = frame(rows("finetune", None, [0.77, 0.78, 0.76]), rows("spp", 4.0, [0.88, 0.87, 0.885]))
    claims = figure4_claims(trials).set_index("claim (paper, Figure 4)")["verdict"]
    assert claims["ACC is stable for λ in 0.5–4"].startswith("not testable here")
    assert claims["ACC is best at λ = 4"].startswith("not testable here")
    assert claims["λ in 0.5–4 beats fine-tuning"] == "confirmed"

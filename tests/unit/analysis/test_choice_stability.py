"""analysis/selection.choice_stability against the exact bootstrap probabilities of hand-made grids."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.selection import choice_stability


def grid(method: str, values: dict[float, list[float]], statuses: dict[float, list[str]] | None = None) -> list[dict]:
    return [{"phase": "grid", "method": method, "lam": lam, "seed": seed, "val_acc": acc,
             "status": (statuses or {}).get(lam, ["finished"] * len(accs))[seed], "searched": "lam"}
            for lam, accs in values.items() for seed, acc in enumerate(accs)]


def test_a_choice_one_seed_decides_is_chosen_again_in_the_draws_without_it() -> None:
    """λ = 1 scores 0.9, 0.9, 0.5 and λ = 2 scores 0.8 on every seed: all three seeds choose 2
    (mean 0.767 < 0.8), and a draw chooses 1 only where seed 2 is not drawn at all, (2/3)³ = 8/27
    of the 27 equally likely draws; so 2 is chosen again in 19/27 = 0.704 of them."""
    table = choice_stability(pd.DataFrame(grid("spp", {1.0: [0.9, 0.9, 0.5], 2.0: [0.8, 0.8, 0.8]})))
    row = table.set_index("method").loc["spp"]
    assert row["chosen"] == "lam=2" and row["seeds"] == 3
    assert row["share"] == pytest.approx(19 / 27, abs=0.03)  # 2,000 draws: about ±0.01
    assert row["also chosen"].startswith("lam=1 (0.")
    assert float(row["also chosen"][7:11]) == pytest.approx(8 / 27, abs=0.03)


def test_ties_go_to_the_smaller_value_and_a_clear_choice_is_always_chosen() -> None:
    """Equal on every seed: the smaller λ, in every draw; a diverged seed counts as −1, so a λ
    that diverged once is chosen only in draws that miss that seed and beat the rest."""
    even = choice_stability(pd.DataFrame(grid("ewc", {3.0: [0.7, 0.8, 0.9], 1.0: [0.7, 0.8, 0.9]})))
    assert even.iloc[0]["chosen"] == "lam=1" and even.iloc[0]["share"] == 1.0 and even.iloc[0]["also chosen"] == "none"
    rows = grid("mas", {1.0: [0.80, 0.80, 0.80], 10.0: [0.95, 0.95, float("nan")]},
                statuses={10.0: ["finished", "finished", "diverged"]})
    row = choice_stability(pd.DataFrame(rows)).iloc[0]
    # λ = 10 wins only where seed 2 is never drawn: 8/27; all seeds: (0.95 + 0.95 − 1)/3 = 0.30 < 0.80
    assert row["chosen"] == "lam=1" and row["share"] == pytest.approx(19 / 27, abs=0.03)


def test_only_grids_over_shared_seeds_are_judged() -> None:
    """An Optuna phase (one seed per configuration) and a method with one configuration are left out."""
    rows = grid("spp", {1.0: [0.9, 0.8]}) + [
        {"phase": "optuna", "method": "ewc", "lam": lam, "seed": 0, "val_acc": 0.8, "status": "finished",
         "searched": "lam"} for lam in (1.0, 2.0, 3.0)]
    assert choice_stability(pd.DataFrame(rows)).empty

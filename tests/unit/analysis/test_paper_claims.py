"""analysis/paper_claims.py on hand-made result folders: each kind of claim graded as a hand
computation says, and the page's table block replaced between its markers only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analysis.paper_claims as paper_claims


def trial(method: str, lam: float | None, seed: int, acc: float, status: str = "finished") -> dict:
    return {"phase": "grid", "method": method, "lam": lam, "seed": seed, "acc": acc, "val_acc": acc,
            "bwt": -0.1, "status": status, "searched": "lam" if lam is not None else "", "benchmark": "b",
            "penalty_step": "explicit" if lam is not None else None, "seconds": 1.0}


def folder(root: Path, name: str, rows: list[dict]) -> None:
    (root / name).mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / name / "trials.csv", index=False)


def grade(monkeypatch, root: Path, claims: list[dict]) -> pd.DataFrame:
    monkeypatch.setattr(paper_claims, "paper_claims", lambda: claims)
    return paper_claims.grade_all(root)


def test_versus_level_and_recorded_claims_by_hand(tmp_path: Path, monkeypatch) -> None:
    rows = [trial("finetune", None, s, a) for s, a in enumerate([0.70, 0.72, 0.74])]
    rows += [trial("spp", 4.0, s, a) for s, a in enumerate([0.80, 0.81, 0.85])]  # +0.10, +0.09, +0.11
    rows += [trial("spp", 1.0, s, a) for s, a in enumerate([0.75, 0.75, 0.75])]
    rows += [trial("ewc", 1.0, s, a) for s, a in enumerate([0.90, 0.92, 0.94])]  # SPP 0.10 below on every seed
    folder(tmp_path, "made", rows)
    claims = [
        {"id": "a", "claim": "SPP above fine-tuning", "source": "T", "kind": "versus", "folders": ["made"],
         "ours": "spp", "reference": ["finetune"], "metric": "acc", "side": "above"},
        {"id": "b", "claim": "SPP above EWC", "source": "T", "kind": "versus", "folders": ["made"],
         "ours": "spp", "reference": ["ewc"], "metric": "acc", "side": "above"},
        {"id": "c", "claim": "SPP reaches 98", "source": "T", "kind": "level", "folders": ["made"],
         "ours": "spp", "metric": "acc", "paper_value": 0.98},
        {"id": "d", "claim": "on CIFAR", "source": "S", "kind": "recorded", "verdict": "not testable here",
         "numbers": "needs a GPU"},
        {"id": "e", "claim": "not run yet", "source": "S", "kind": "versus", "folders": ["absent"],
         "ours": "spp", "reference": ["finetune"], "metric": "acc", "side": "above"},
    ]
    table = grade(monkeypatch, tmp_path, claims)
    assert list(table["verdict"][:2]) == ["confirmed", "refuted: below"]
    assert table.loc[0, "measured (points; 95% interval)"] == "spp lam=4 − finetune, acc: +10.00 [+7.52, +12.48]"
    assert table.loc[0, "seeds"] == 3
    assert table.loc[2, "verdict"].startswith("refuted")  # 82.0 against 98: the interval excludes it
    assert table.loc[2, "measured (points; 95% interval)"].startswith("spp lam=4: 82.00")
    assert table.loc[3, "verdict"] == "not testable here" and table.loc[4, "verdict"] == "not tested yet"


def test_sensitivity_counts_each_seeds_stable_decades_by_hand(tmp_path: Path, monkeypatch) -> None:
    grid = [0.1, 1.0, 10.0, 100.0]
    rows = []
    for seed in range(3):
        # SPP within a point of its best over 0.1..10 (2 decades); EWC only at 1 (0 decades),
        # its 10 diverged (never stable, whatever its numbers)
        rows += [trial("spp", lam, seed, a) for lam, a in zip(grid, [0.895, 0.90, 0.892, 0.70], strict=True)]
        rows += [trial("ewc", lam, seed, a) for lam, a in zip(grid, [0.80, 0.90, 0.0, 0.5], strict=True)]
        rows[-2]["status"] = "diverged"
    folder(tmp_path, "grid", rows)
    decades = paper_claims.stable_decades(pd.read_csv(tmp_path / "grid" / "trials.csv"), "spp", 0.01)
    assert list(decades) == pytest.approx([2.0, 2.0, 2.0])
    table = grade(monkeypatch, tmp_path, [{"id": "s", "claim": "less sensitive", "source": "A",
                                           "kind": "sensitivity", "folders": ["grid"], "ours": "spp",
                                           "reference": ["ewc"], "side": "above"}])
    assert table.loc[0, "verdict"] == "confirmed"  # +2 decades on every seed
    measured = table.loc[0, "measured (points; 95% interval)"]
    assert measured.endswith("spp vs ewc: 2 against 0; difference +2 [+2, +2] decades")


def test_the_page_block_is_replaced_between_its_markers_only(tmp_path: Path) -> None:
    page = f"# Title\n\nbefore\n{paper_claims.START}\nold table\n{paper_claims.END}\nafter\n"
    table = pd.DataFrame([{c: "x" for c in paper_claims.COLUMNS}])
    updated = paper_claims._page_with(page, paper_claims.render(table))
    assert updated.startswith("# Title\n\nbefore\n") and updated.endswith("\nafter\n") and "old table" not in updated
    with pytest.raises(ValueError, match="no claims markers"):
        paper_claims._page_with("# nothing here\n", paper_claims.render(table))


def test_a_claim_may_keep_one_phase_or_one_penalty_step(tmp_path: Path, monkeypatch) -> None:
    rows = [{**trial("spp", 1.0, 0, 0.99), "phase": "optuna"}]  # one lucky search trial
    rows += [{**trial("spp", 4.0, s, a), "phase": "final"} for s, a in ((1, 0.80), (2, 0.81), (3, 0.85))]
    rows += [{**trial("finetune", None, s, a), "phase": "final"} for s, a in ((1, 0.70), (2, 0.72), (3, 0.74))]
    rows += [{**trial("spp", 4.0, s, 0.1), "penalty_step": "implicit"} for s in (1, 2, 3)]
    folder(tmp_path, "tpe", rows)
    claim = {"id": "f", "claim": "final", "source": "T", "kind": "versus", "folders": ["tpe"], "ours": "spp",
             "reference": ["finetune"], "metric": "acc", "side": "above"}
    final = grade(monkeypatch, tmp_path, [{**claim, "phase": "final", "step": "explicit"}])
    assert final.loc[0, "measured (points; 95% interval)"] == "spp lam=4 − finetune, acc: +10.00 [+7.52, +12.48]"
    assert final.loc[0, "verdict"] == "confirmed"
    whole = grade(monkeypatch, tmp_path, [claim])  # the search's lucky seed-0 trial would be selected
    assert whole.loc[0, "measured (points; 95% interval)"].startswith("spp lam=1 − finetune")


def test_eq7_fwt_may_take_its_joint_runs_from_another_folder(tmp_path: Path, monkeypatch) -> None:
    """A matched-grid study without a joint model of its own, its FWT (eq. 7: P[i, i] − m_i, here
    one term of two tasks) from the joint runs of the same seeds in another sweep's folder."""
    # P[1, 1] per seed; the joint runs' m_1 (their final accuracy on task 1)
    first = {"spp": [0.95, 0.96, 0.97], "ewc": [0.90, 0.92, 0.93], "joint": [0.99, 0.98, 0.97]}
    rows, cells = {"matched": [], "final": []}, {"matched": [], "final": []}
    for method, accs in first.items():
        where = "final" if method == "joint" else "matched"
        for seed, acc in enumerate(accs):
            tid = f"{method}_{seed}"
            rows[where].append({**trial(method, 4.0 if method == "spp" else 1.0 if method == "ewc" else None,
                                        seed, acc), "trial_id": tid, "fwt_paper": float("nan")})
            forgot = 0.0 if method == "joint" else 0.1
            cells[where] += [(tid, 1, 1, acc), (tid, 2, 1, acc - forgot), (tid, 2, 2, 0.9)]
    for name in rows:
        folder(tmp_path, name, rows[name])
        pd.DataFrame(cells[name], columns=["trial_id", "after_task", "task", "accuracy"]).to_csv(
            tmp_path / name / "accuracy_matrices.csv", index=False)
    trials = paper_claims.pooled_trials([tmp_path / "matched"])
    filled = paper_claims.joint_fwt(trials, [tmp_path / "matched"], [tmp_path / "final"])
    spp = filled[filled["method"] == "spp"].sort_values("seed")["fwt_paper"]
    assert list(spp) == pytest.approx([-0.04, -0.02, 0.0])  # 0.95 − 0.99, 0.96 − 0.98, 0.97 − 0.97
    assert set(filled["method"]) == {"spp", "ewc"}  # the joint runs lend m_i, not rows
    claim = {"id": "g", "claim": "FWT above EWC's", "source": "T", "kind": "versus", "folders": ["matched"],
             "joint_from": ["final"], "ours": "spp", "reference": ["ewc"], "metric": "fwt_paper", "side": "above"}
    table = grade(monkeypatch, tmp_path, [claim])
    # SPP − EWC per seed: +5, +4, +4 points, whatever m_i
    assert table.loc[0, "measured (points; 95% interval)"].startswith("spp lam=4 − ewc lam=1, fwt_paper: +4.33 [")
    assert "[final](final/report.md)" in table.loc[0, "table"]


def test_concentration_pairs_each_seeds_gini_by_hand(tmp_path: Path, monkeypatch) -> None:
    """SPP's Gini minus EWC's and MAS's per seed, Holm over the two: +0.10, +0.12, +0.11 against
    EWC (t = 19.05 at 2 df, p = 0.0027; Holm ×2 = 0.0055: above) and −0.02, +0.03, −0.01 against
    MAS (mean 0, not settled)."""
    rows = [trial(m, None if m == "finetune" else 1.0, s, 0.8) for m in ("finetune", "spp", "ewc", "mas")
            for s in range(3)]
    folder(tmp_path, "imp", rows)
    gini = {"spp": [0.90, 0.92, 0.91], "ewc": [0.80, 0.80, 0.80], "mas": [0.92, 0.89, 0.92]}
    pd.DataFrame([{"method": m, "configuration": "lam=1", "seed": s, "n": 10, "gini": g, "top1_share": 0.1,
                   "near_zero": 0.5} for m, values in gini.items() for s, g in enumerate(values)]).to_csv(
        tmp_path / "imp" / "importance_concentration_by_seed.csv", index=False)
    table = grade(monkeypatch, tmp_path, [{"id": "f6", "claim": "concentrated", "source": "F6",
                                           "kind": "concentration", "folders": ["imp"], "ours": "spp",
                                           "reference": ["ewc", "mas"], "column": "gini", "side": "above"}])
    assert table.loc[0, "verdict"] == "confirmed" and table.loc[0, "seeds"] == 3
    assert table.loc[0, "measured (points; 95% interval)"].startswith("gini, spp vs ewc: 0.91 against 0.8; "
                                                                     "difference +0.11")
    assert table.loc[1, "verdict"].startswith("not settled at 3 seeds")

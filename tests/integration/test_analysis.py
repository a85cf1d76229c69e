"""analysis/: best configurations, robustness score and concentration on hand-made tables;
the report's files on a small real sweep."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.importance import concentration
from analysis.load import load_matrices, load_trials
from analysis.report import write_report
from analysis.robustness import robustness_scores
from analysis.tables import best_configs, summarize_configs
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import parse_study
from tests.faults import with_faults


def trial(method: str, lam: float | None, seed: int, acc: float, status: str = "finished") -> dict:
    row = {"method": method, "seed": seed, "status": status, "acc": acc if status == "finished" else math.nan,
           "bwt": -0.01, "fwt": 0.0, "fwt_paper": math.nan, "smt": 0.0, "seconds": 1.0,
           "searched": "lam" if lam is not None else "", "lam": lam if lam is not None else math.nan}
    return row


def test_best_config_is_the_highest_mean_over_seeds_with_diverged_seeds_at_minus_one() -> None:
    rows = [trial("spp", 1, 0, 0.90), trial("spp", 1, 1, 0.92),            # mean 0.91
            trial("spp", 4, 0, 0.99), trial("spp", 4, 1, 0.0, "diverged"),  # (0.99 - 1) / 2 < 0.91
            trial("spp", 0.5, 0, 0.91), trial("spp", 0.5, 1, 0.91),        # tie with λ=1: smaller wins
            trial("joint", None, 0, 0.97), trial("joint", None, 1, 0.99)]
    best = best_configs(pd.DataFrame(rows)).set_index("method")
    assert best.loc["spp", "lam"] == 0.5 and best.loc["spp", "config"] == "lam=0.5"
    assert best.loc["spp", "acc_mean"] == pytest.approx(0.91) and best.loc["spp", "acc_std"] == pytest.approx(0.0)
    assert best.loc["joint", "acc_mean"] == pytest.approx(0.98)
    assert best.loc["joint", "acc_std"] == pytest.approx(np.std([0.97, 0.99], ddof=1))
    summary = summarize_configs(pd.DataFrame(rows)).set_index("config")
    assert summary.loc["lam=4", "n_diverged"] == 1 and summary.loc["lam=4", "acc_mean"] == pytest.approx(0.99)


def test_robustness_score_is_the_width_in_decades_around_the_best() -> None:
    accs = {0.01: 0.90, 0.1: 0.955, 1: 0.96, 10: 0.965, 100: 0.958, 1000: 0.90}
    rows = [trial("spp", lam, s, acc) for lam, acc in accs.items() for s in (0, 1)]
    rows += [trial("ewc", lam, s, acc) for lam, acc in {0.1: 0.90, 1: 0.96, 10: 0.94}.items() for s in (0, 1)]
    rows += [trial("mas", 0.1, 0, 0.97), trial("mas", 1, 0, 0.969), trial("mas", 10, 0, 0.0, "diverged")]
    scores = robustness_scores(pd.DataFrame(rows)).set_index("method")
    # spp: best 0.965 at λ=10; within 1 point: 0.1 .. 100 (0.955 >= 0.955) -> 3 decades
    assert scores.loc["spp", "best_lam"] == 10 and scores.loc["spp", "decades"] == pytest.approx(3.0)
    assert scores.loc["ewc", "decades"] == pytest.approx(0.0)
    assert scores.loc["mas", "stable_high"] == 1 and scores.loc["mas", "first_diverged_lam"] == 10


def test_robustness_has_a_row_per_penalty_step_and_the_figure_draws_both(tmp_path: Path) -> None:
    rows = []
    for step, accs in [("explicit", {0.1: 0.95, 1: 0.96, 10: None, 100: None}),
                       ("implicit", {0.1: 0.95, 1: 0.96, 10: 0.958, 100: 0.957})]:
        for lam, acc in accs.items():
            for seed in (0, 1):
                row = trial("spp", lam, seed, acc if acc is not None else 0.0, "finished" if acc else "diverged")
                rows.append({**row, "searched": "lam,penalty_step", "penalty_step": step})
    rows += [{**trial("finetune", None, 0, 0.9), "penalty_step": None}]
    frame = pd.DataFrame(rows)
    scores = robustness_scores(frame).set_index("penalty_step")
    assert list(scores["method"]) == ["spp", "spp"]
    assert scores.loc["explicit", "stable_high"] == 1 and scores.loc["explicit", "first_diverged_lam"] == 10
    assert scores.loc["implicit", "stable_high"] == 100 and scores.loc["implicit", "decades"] == pytest.approx(3.0)
    from analysis.figures import lambda_curve

    path = lambda_curve(frame, tmp_path)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_concentration_by_hand() -> None:
    values = np.array([0.0, 0.0, 0.0, 4.0])  # one parameter holds everything
    result = concentration(values)
    # Gini of (0,0,0,4): sum_i (2i - n - 1) v_i / (n sum v) = (2*4 - 5) * 4 / (4 * 4) = 0.75
    assert result["gini"] == pytest.approx(0.75)
    assert result["top1_share"] == pytest.approx(1.0) and result["near_zero"] == pytest.approx(0.75)
    assert concentration(np.ones(10))["gini"] == pytest.approx(0.0)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def faulty_sweep(tmp_path_factory: pytest.TempPathFactory, ray_local) -> tuple[Path, Path]:
    """A real sweep where fine-tuning raises on every seed and SPP at λ = 10⁵ diverges, with its
    report: (sweep folder, report page)."""
    storage = tmp_path_factory.mktemp("faulty")
    study = parse_study({
        "name": "r", "benchmark": "split_digits", "fixed": {"epochs": 2, "save_importances": True},
        "methods": {"spp": {"space": {"lam": [0.5, 4.0, 1e5]}}, "ewc": {"space": {"lam": [1.0, 10.0]}},
                    "joint": {}, "finetune": {}},
        "seeds": 2, "resources": {"cpu": 1}, "max_failures": 0, "storage": str(storage),
        "reproduces": ["table2", "figure4"],
    })
    outcome = run_sweep(study, with_faults(SweepOptions(verbose=0)),
                        extra_config={"faults": {"method": "finetune", "raise_at_task": 0}})
    return Path(outcome.root), write_report(outcome.root, storage / "report")


def test_a_sweep_with_diverged_and_errored_trials_keeps_every_trial(faulty_sweep: tuple[Path, Path]) -> None:
    trials = load_trials(faulty_sweep[0])
    assert len(trials) == 3 * 2 + 2 * 2 + 2 + 2  # nothing dropped
    counts = trials["status"].value_counts()
    assert counts["errored"] == 2 and counts["diverged"] == 2 and counts["finished"] == 10
    assert set(load_matrices(faulty_sweep[0])["after_task"]) == {1, 2, 3, 4, 5}


def test_the_report_counts_failures_and_shows_each_figure(faulty_sweep: tuple[Path, Path]) -> None:
    report = faulty_sweep[1]
    text = report.read_text()
    assert "2 errored" in text and "2 diverged" in text and "injected failure" in text
    assert "FWT (paper eq. 7, vs joint)" in text  # the study has a joint run
    for name in ["lambda_robustness", "accuracy_matrices", "running_accuracy", "importance"]:
        width, height = png_size(report.parent / f"{name}.png")
        assert 300 < width < 4000 and 200 < height < 3000, (name, width, height)
        assert (report.parent / f"{name}.pdf").stat().st_size > 1000
        assert f"({name}.png)" in text


def test_the_reports_tables_are_files_for_pandas_and_latex(faulty_sweep: tuple[Path, Path]) -> None:
    folder = faulty_sweep[1].parent
    table = pd.read_csv(folder / "best_configs.csv")
    assert set(table["method"]) == {"spp", "ewc", "joint"}  # finetune errored on every seed
    assert "\\begin{tabular}" in (folder / "best_configs.tex").read_text()
    assert len(pd.read_parquet(folder / "trials.parquet")) == len(load_trials(faulty_sweep[0]))
    exported = pd.read_csv(folder / "trials.csv")  # a reader sees the values, not just names
    assert {"lam=0.5", "lam=4", "lam=1e+05"} <= set(exported["config"].dropna()) and "params" not in exported
    assert set(exported["searched"].dropna()) == {"lam"}
    concentration_table = pd.read_csv(folder / "importance_concentration.csv")
    assert set(concentration_table["method"]) == {"spp", "ewc"}
    assert concentration_table["gini"].between(0, 1).all()
    stability = pd.read_csv(folder / "choice_stability.csv")  # each grid's choice, its seeds drawn again
    assert "spp" in set(stability["method"]) and stability["share"].between(0, 1).all()
    assert "How sure each grid's choice is" in (folder / "report.md").read_text()
    by_seed = pd.read_csv(folder / "importance_concentration_by_seed.csv")  # every seed, for paired tests
    assert by_seed.groupby("method")["seed"].nunique().to_dict() == {"ewc": 2, "spp": 2}
    drawn = by_seed.sort_values("seed").groupby("method").first()  # the seed the figure draws
    assert drawn.loc[concentration_table["method"], "gini"].to_numpy() == pytest.approx(concentration_table["gini"])


def test_the_report_sets_the_paper_beside_the_sweep_and_warns_of_test_set_selection(
        faulty_sweep: tuple[Path, Path]) -> None:
    text = faulty_sweep[1].read_text()
    assert "The paper beside ours: Table 2" in text and "This sweep ran split_digits, not split_mnist" in text
    paper = pd.read_csv(faulty_sweep[1].parent / "paper_table2.csv", dtype=str, keep_default_na=False)
    paper = paper.set_index("method")
    assert paper.loc["SPP", "paper ACC"] == "98.31" and paper.loc["SGD", "ours ACC"] == "n/a"
    assert "stable for λ in 0.5–4" in text and "Selection protocol: end of training" in text
    assert "**Warning**: this sweep selected on the test set" in text  # metric acc, the default


def test_a_report_of_a_sweep_whose_every_trial_diverged(tmp_path: Path, ray_local) -> None:
    """Every λ diverges with the explicit step at lr 0.1: the report lists them, draws the
    figure with their diverged strip, and says how many of the planned trials there are."""
    study = parse_study({"name": "dead", "benchmark": "split_digits", "fixed": {"epochs": 3},
                         "methods": {"spp": {"space": {"lam": [1000, 10000]}}}, "seeds": 1,
                         "resources": {"cpu": 1}, "storage": str(tmp_path)})
    outcome = run_sweep(study, SweepOptions(verbose=0))
    import os

    previous = os.umask(0o022)
    try:
        report = write_report(outcome.root, Path(outcome.root) / "report")
    finally:
        os.umask(previous)
    assert report.parent.stat().st_mode & 0o777 == 0o755  # colleagues can read it (not mkdtemp's 0700)
    text = report.read_text()
    assert "2 trials: 0 finished, 2 diverged" in text and "  - SPP: lam=1000, lam=1e+04 (2 trials)" in text
    assert (report.parent / "lambda_robustness.png").exists()
    tex = (report.parent / "best_configs.tex").read_text()
    assert tex.startswith("% ") and "booktabs" in tex.splitlines()[0] and "±" not in tex
    # a half-finished sweep says how many of its planned trials it holds
    import shutil

    shutil.rmtree(sorted(Path(outcome.root, "grid").glob("spp_*"))[0])
    assert "1 of 2 trials:" in write_report(outcome.root, Path(outcome.root) / "report").read_text()


def test_the_paper_beside_ours_by_hand() -> None:
    """Our fractions become percent beside the paper's printed values; ACC difference in points;
    our standard FWT is not set against the paper's eq.-7 FWT."""
    from analysis.paper import comparison_table, paper_results

    best = pd.DataFrame([{"method": "spp", "config": "lam=4", "acc_mean": 0.95, "acc_std": 0.01,
                          "bwt_mean": -0.02, "bwt_std": 0.005, "fwt_mean": 0.001, "fwt_std": 0.0}])
    table = comparison_table(best, "table2", fwt_column="fwt").set_index("method")
    assert table.loc["SPP", "ours ACC"] == "95.00 ± 1.00" and table.loc["SPP", "paper ACC"] == "98.31"
    assert table.loc["SPP", "ACC ours − paper"] == "-3.31"  # 95.00 - 98.31
    assert table.loc["SPP", "ours BWT"] == "-2.00 ± 0.50" and table.loc["SPP", "ours FWT"] == "n/a"
    assert table.loc["Joint", "paper FWT"] == "/" and table.loc["EWC", "ours ACC"] == "n/a"
    assert len(table) == len(paper_results()["table2"]["rows"])
    paper_fwt = comparison_table(best.rename(columns={"fwt_mean": "fwt_paper_mean", "fwt_std": "fwt_paper_std"}),
                                 "table3", fwt_column="fwt_paper").set_index("method")
    assert paper_fwt.loc["SPP", "ours FWT"] == "0.10 ± 0.00" and paper_fwt.loc["SPP", "paper ACC"] == "94.51"


def test_reproduces_names_a_published_table() -> None:
    from spp_sweep.sweep.study import StudyError, parse_study

    base = {"benchmark": "split_digits", "methods": ["spp"]}
    assert parse_study({**base, "reproduces": "table2"}).reproduces == ("table2",)
    assert parse_study({**base, "reproduces": ["table3", "figure4"]}).to_dict()["reproduces"] == ["table3", "figure4"]
    with pytest.raises(StudyError, match="reproduces: 'table9'; give one or a list of: figure4, table2, table3"):
        parse_study({**base, "reproduces": "table9"})

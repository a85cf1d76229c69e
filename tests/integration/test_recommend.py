"""Selection on validation, never on test, and `spp-sweep recommend` end to end."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_trials
from analysis.tables import best_configs
from spp_sweep.errors import ConfigError
from spp_sweep.recommend import RecommendOptions, recommend, search_study
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import load_study, parse_study
from tests.unit.benchmarks.test_custom_data import blobs


def test_selection_follows_validation_where_test_disagrees(tmp_path: Path, ray_local) -> None:
    """A planted case: test labels are flipped, so learning well scores high on validation
    (carved from training data) and near zero on test; barely training scores ~0.5 on both."""
    data = blobs(n_classes=4, per_class=60)  # two tasks, {0, 1} and {2, 3}: a stream needs two
    np.savez(tmp_path / "flipped.npz", **{**data, "y_test": data["y_test"] ^ 1})  # flipped within each task
    study = parse_study({
        "name": "planted", "benchmark": "arrays", "storage": str(tmp_path / "sweeps"),
        "benchmark_options": {"path": str(tmp_path / "flipped.npz"), "n_tasks": 2},
        "fixed": {"epochs": 5, "validation": 0.25, "batch_size": 16},
        "methods": {"finetune": {"space": {"lr": [1e-6, 0.1]}}},
        "search": {"metric": "val_acc"}, "final": {"seeds": [1, 2]}, "resources": {"cpu": 1},
    })
    outcome = run_sweep(study, SweepOptions(verbose=0))
    trials = load_trials(outcome.root)
    grid = trials[trials["phase"] == "grid"]
    on_test = best_configs(grid, metric="acc").iloc[0]
    on_validation = best_configs(grid, metric="val_acc").iloc[0]
    assert on_test["lr"] == 1e-6 and on_validation["lr"] == 0.1  # the two criteria disagree here
    final = trials[trials["phase"] == "final"]
    assert set(final["lr"]) == {0.1}  # the sweep re-ran the configuration validation chose
    assert final["val_acc"].min() > 0.9 and final["acc"].max() < 0.2


@dataclass(frozen=True)
class Recommended:
    """``recommend`` run once on 4 classes of blobs in 2 tasks, inside the tests' Ray session."""

    options: RecommendOptions
    report: Path
    ranking: pd.DataFrame

    @property
    def home(self) -> Path:
        return Path(self.options.storage) / "mine"


@pytest.fixture(scope="module")
def recommended(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Recommended:
    folder = tmp_path_factory.mktemp("recommend")
    np.savez(folder / "mine.npz", **blobs(n_classes=4, per_class=30))
    options = RecommendOptions(data=str(folder / "mine.npz"), methods=("spp", "er", "finetune"), budget=2, seeds=2,
                               curve_points=3, benchmark_options=(("n_tasks", 2),), settings=(("epochs", 2),),
                               storage=str(folder / "rec"), verbose=0)
    report = recommend(options)
    assert ray_local.is_initialized()  # the caller's Ray session: recommend ends only one it started itself
    return Recommended(options, report, pd.read_csv(report.parent / "ranking.csv"))


def test_recommend_ranks_replay_beside_the_regularisers_with_its_memory(recommended: Recommended) -> None:
    ranking = recommended.ranking
    assert recommended.report == recommended.home / "recommendation" / "recommendation.md"
    assert "**Use " in recommended.report.read_text()
    assert set(ranking["method"]) == {"spp", "er", "finetune"}
    stored = dict(zip(ranking["method"], ranking["stored examples"]))
    # er keeps up to 100 per class: every training example of the 4 classes (80% of 30 each, validation aside)
    assert stored["spp"] == stored["finetune"] == 0 and 0 < stored["er"] <= 4 * 24


def test_recommend_ranks_on_validation_and_picks_the_simplest_equivalent_of_the_leader(
        recommended: Recommended) -> None:
    ranking, folder = recommended.ranking, recommended.report.parent
    values = ranking["validation ACC"].str.split(" ± ").str[0].astype(float)
    assert list(values) == sorted(values, reverse=True)
    assert ranking["vs #1 (seeds paired)"].iloc[0] == "leader"
    chosen = load_study(folder / "recommended.yaml")
    ties = pd.read_csv(folder / "ties.csv")
    assert chosen.methods[0].method in set(ties[ties["equivalent_to_leader"]]["method"])
    assert chosen.fixed["validation"] == 0.2 and chosen.benchmark == "arrays"
    assert "end-of-training selection" in recommended.report.read_text() and (folder / "compute.csv").exists()


def test_recommend_searches_every_method_in_one_phase_and_reports_each_sweep(recommended: Recommended) -> None:
    search = load_trials(recommended.home / "search")
    assert search.groupby(["phase", "method"]).size().to_dict() == {
        ("final", "er"): 2, ("final", "finetune"): 2, ("final", "spp"): 2, ("optuna", "er"): 2,
        ("optuna", "finetune"): 2, ("optuna", "spp"): 2}
    if recommended.ranking["method"].iloc[0] == "spp":  # the winner's strength swept around its best value
        curve = load_trials(recommended.home / "curve")
        assert curve["lam"].nunique() == 3 and len(curve) == 6
        assert (recommended.report.parent / "lambda_robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (recommended.home / "search" / "report" / "report.md").exists()


def test_a_finished_recommend_resumed_reruns_nothing(recommended: Recommended) -> None:
    before = sorted(p.parent.name for p in recommended.home.rglob("params.json"))
    recommend(dataclasses.replace(recommended.options, resume=True))
    assert sorted(p.parent.name for p in recommended.home.rglob("params.json")) == before


def test_recommend_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spp_sweep", "recommend", *args], capture_output=True, text=True)

    for args, message in [((str(tmp_path / "absent.npz"),), "not an .npz/.pt file"),
                          (("split_digits", "--methods", "spp,nope"), "unknown method nope"),
                          (("split_digits", "--validation", "1.5"), "fraction in (0, 1)"),
                          (("split_digits", "--resume", "--storage", str(tmp_path)), "no recommendation")]:
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())
    helped = run("--help")
    assert helped.returncode == 0 and "--budget" in helped.stdout and "validation" in helped.stdout


def test_recommend_penalty_step_fixed_searched_and_carried_into_follow_up_studies() -> None:
    from spp_sweep.errors import UserError
    from spp_sweep.recommend import curve_study, recommended_study, search_study

    searched = search_study(RecommendOptions(data="split_digits", methods=("spp", "lwf"), penalty_step="search"), "s")
    spp, lwf = searched.methods
    assert spp.space["penalty_step"].values == ("explicit", "implicit") and "penalty_step" not in lwf.space
    fixed = search_study(RecommendOptions(data="split_digits", methods=("ewc", "lwf"), penalty_step="implicit"), "s")
    assert fixed.methods[0].options == {"penalty_step": "implicit"} and fixed.methods[1].options == {}
    # a winner whose step was fixed (options) or searched (params): the curve and the recommended
    # study keep it as a method option, never as a run setting
    winner = {"method": "ewc", "params": {"lam": 30.0, "lr": 0.05}, "val_acc_mean": 0.9}
    curve = curve_study(fixed, winner, points=3, seeds=1)
    assert curve.methods[0].options == {"penalty_step": "implicit"} and curve.fixed["lr"] == 0.05
    winner = {"method": "spp", "params": {"lam": 30.0, "lr": 0.05, "penalty_step": "implicit"}, "val_acc_mean": 0.9}
    assert curve_study(searched, winner, points=3, seeds=1).methods[0].options == {"penalty_step": "implicit"}
    recommended = parse_study(recommended_study(searched, winner, "mine", 2))
    assert recommended.methods[0].options == {"penalty_step": "implicit", "lam": 30.0}
    try:  # the implicit step is plain SGD's: momentum is refused before any trial
        search_study(RecommendOptions(data="split_digits", methods=("spp",), penalty_step="implicit",
                                      settings=(("momentum", 0.9),)), "s")
    except UserError as error:
        assert "momentum" in str(error)
    else:
        raise AssertionError("momentum with the implicit step was accepted")


def test_replay_is_considered_unless_storing_examples_is_forbidden() -> None:
    from spp_sweep.recommend import DEFAULT_METHODS, REPLAY_METHODS

    assert "er" in DEFAULT_METHODS and set(REPLAY_METHODS) == {"er", "agem", "derpp"}
    searched = search_study(RecommendOptions(data="split_digits"), "s")
    assert "er" in [m.method for m in searched.methods]
    with pytest.raises(ConfigError, match="--no-replay forbids keeping examples, and er, agem store them"):
        search_study(RecommendOptions(data="split_digits", methods=("spp", "er", "agem"), store_examples=False), "s")

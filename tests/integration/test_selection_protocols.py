"""Selection protocols (end_of_training, first_tasks, transfer), the robust choice, ties,
hyperparameter importances and compute spent (docs/guide/selection.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_trials
from analysis.selection import compute_spent, hyperparameter_importances, robust_choice, simplest_of_tied, tie_table
from spp_sweep.errors import ConfigError
from spp_sweep.sweep.runner import SweepOptions, check_data, run_sweep
from spp_sweep.sweep.study import StudyError, parse_study
from tests.unit.benchmarks.test_custom_data import blobs

GROUPS = "0,1;2,3;4,5"


def planted(path: Path, scale_last: float = 1e4) -> Path:
    """Three two-class tasks; the third's inputs are scaled by 1e4. With fine-tuning at 3 epochs,
    lr 0.3 beats lr 0.001 on the first two tasks (validation ACC 1.0 against 0.7) and diverges on
    the third, so selection that sees task 3 picks 0.001 and selection on the first two picks 0.3."""
    data = blobs(n_classes=6, per_class=40)
    for split in ("train", "test"):
        data[f"x_{split}"][data[f"y_{split}"] >= 4] *= scale_last
    np.savez(path, **data)
    return path


def study(tmp_path: Path, name: str, data: Path, selection: dict | None = None) -> object:
    return parse_study({
        "name": name, "benchmark": "arrays", "storage": str(tmp_path / "sweeps"),
        "benchmark_options": {"path": str(data), "groups": GROUPS},
        "fixed": {"epochs": 3, "batch_size": 16, "validation": 0.25},
        "methods": {"finetune": {"space": {"lr": [0.001, 0.3]}}},
        "search": {"metric": "val_acc"}, "final": {"seeds": [1]}, "resources": {"cpu": 1},
        **({"selection": selection} if selection else {}),
    })


def test_first_tasks_selection_sees_only_the_first_tasks(tmp_path: Path, ray_local) -> None:
    data = planted(tmp_path / "planted.npz")
    whole = load_trials(run_sweep(study(tmp_path, "whole", data), SweepOptions(verbose=0)).root)
    assert set(whole.loc[whole["phase"] == "final", "lr"]) == {0.001}  # task 3 rules 0.3 out

    first_root = run_sweep(study(tmp_path, "first", data, {"protocol": "first_tasks", "tasks": 2}),
                           SweepOptions(verbose=0)).root
    first = load_trials(first_root)
    chosen = first[first["phase"].isin(["grid", "final"])]
    # selection trained and validated on tasks 1-2 only: task 3's data never reached it
    assert set(chosen["tasks_done"]) == {2} and set(chosen["n_tasks"]) == {2} and set(chosen["first_tasks"]) == {2}
    assert set(first.loc[first["phase"] == "final", "lr"]) == {0.3}  # so it chose what task 3 would rule out
    evaluated = first[first["phase"] == "evaluate"]  # then the choice, fixed, on the whole stream
    assert list(evaluated["lr"]) == [0.3] and list(evaluated["status"]) == ["diverged"]
    assert int(evaluated["n_tasks"].iloc[0]) == 3 and int(evaluated["first_tasks"].iloc[0]) == 0
    spent = compute_spent(first).set_index("phase")
    assert spent.loc["grid", "trial_tasks"] == 4 and spent.loc["final", "trial_tasks"] == 2
    assert list(spent.index) == ["grid", "final", "evaluate"] and (spent["wall_seconds"] > 0).all()
    assert set(spent["wall_from"]) == {"trials"}  # no sweep folder given: from the trials' own times
    clocked = compute_spent(first, first_root).set_index("phase")  # the driver's clock: fixed costs too
    assert set(clocked["wall_from"]) == {"driver"} and list(clocked.index) == ["start-up", *spent.index]
    assert (clocked.loc[spent.index, "wall_seconds"] >= spent["wall_seconds"]).all()


def test_transfer_tunes_on_one_benchmark_and_evaluates_on_the_other(tmp_path: Path, ray_local) -> None:
    tuning = tmp_path / "tuning.npz"
    np.savez(tuning, **blobs(n_classes=6, per_class=40, seed=3))
    evaluation = planted(tmp_path / "evaluation.npz")
    selection = {"protocol": "transfer", "tune_on": {"benchmark": "arrays",
                                                     "benchmark_options": {"path": str(tuning), "groups": GROUPS}}}
    trials = load_trials(run_sweep(study(tmp_path, "transfer", evaluation, selection), SweepOptions(verbose=0)).root)
    paths = {phase: set(trials.loc[trials["phase"] == phase, "path"].map(
        lambda p: __import__("json").loads((Path(p) / "params.json").read_text())["study"]["benchmark_options"][
            "path"]))
        for phase in ("grid", "final", "evaluate")}
    assert paths == {"grid": {str(tuning)}, "final": {str(tuning)}, "evaluate": {str(evaluation)}}
    assert set(trials.loc[trials["phase"] == "final", "lr"]) == {0.3}  # chosen on the tuning benchmark
    assert list(trials.loc[trials["phase"] == "evaluate", "status"]) == ["diverged"]  # and only evaluated here


def test_protocols_are_checked_before_anything_runs(tmp_path: Path) -> None:
    data = planted(tmp_path / "planted.npz")
    bad = [({"protocol": "first_tasks", "tasks": 1}, "selection.tasks"),
           ({"protocol": "someday"}, "selection.protocol"),
           ({"protocol": "transfer"}, "selection.tune_on"),
           ({"protocol": "transfer", "tune_on": {"benchmark": "nope"}}, "selection.tune_on.benchmark"),
           ({"protocol": "end_of_training", "tasks": 2}, "only for protocol first_tasks")]
    for selection, message in bad:
        with pytest.raises(StudyError, match=message):
            study(tmp_path, "bad", data, selection)
    without_final = {**study(tmp_path, "x", data).to_dict(), "final": None,
                     "selection": {"protocol": "first_tasks", "tasks": 2}}
    with pytest.raises(StudyError, match="final.seeds"):
        parse_study(without_final)
    with pytest.raises(ConfigError, match="has 3 tasks"):  # k must leave tasks unseen
        check_data(study(tmp_path, "k3", data, {"protocol": "first_tasks", "tasks": 3}))
    other = tmp_path / "four.npz"
    np.savez(other, **blobs(n_classes=4, per_class=20))
    mismatch = {"protocol": "transfer",
                "tune_on": {"benchmark": "arrays", "benchmark_options": {"path": str(other), "n_tasks": 2}}}
    with pytest.raises(ConfigError, match="same scenario"):
        check_data(study(tmp_path, "shape", data, mismatch))
    assert not (tmp_path / "sweeps").exists()
    # transfer tunes with the evaluation benchmark's training budget and model, not the tuning one's
    tuned = parse_study({"benchmark": "arrays", "benchmark_options": {"path": str(data), "groups": GROUPS},
                         "methods": ["finetune"], "final": {"seeds": 1}, "selection": {
                             "protocol": "transfer", "tune_on": {"benchmark": "split_digits"}}})
    assert tuned.selection_part()["fixed"] == {"epochs": 10, "batch_size": 64, "model": "mlp",
                                              "model_options": {"hidden": [256, 128], "dropout": 0.0}}
    assert tuned.study_part()["fixed"] == {}
    round_trip = study(tmp_path, "rt", data, {"protocol": "first_tasks", "tasks": 2})
    assert parse_study(round_trip.to_dict()) == round_trip


def curve_rows(surface: dict[float, list[float | None]]) -> pd.DataFrame:
    """Trial rows of a λ curve: None is a diverged seed."""
    return pd.DataFrame([{"lam": lam, "seed": seed, "status": "diverged" if v is None else "finished",
                          "val_acc": np.nan if v is None else v}
                         for lam, values in surface.items() for seed, v in enumerate(values)])


def test_the_robust_choice_is_inside_the_stable_range_not_at_the_edge() -> None:
    # a broad plateau 0.1-10 near 0.95, the single best mean at 10 right before divergence,
    # one seed diverged at 30 (its finished seeds score highest), all diverged from 100
    surface = {0.01: [0.80, 0.81, 0.79], 0.1: [0.945, 0.95, 0.948], 0.3: [0.95, 0.949, 0.951],
               1.0: [0.952, 0.95, 0.951], 3.0: [0.951, 0.953, 0.95], 10.0: [0.956, 0.955, 0.957],
               30.0: [0.97, 0.97, None], 100.0: [None, None, None]}
    choice = robust_choice(curve_rows(surface), tolerance=0.01)
    assert choice["argmax"] == 10.0  # the best complete mean: the edge of divergence
    assert (choice["stable_low"], choice["stable_high"]) == (0.1, 10.0)  # 30 has a diverged seed: out
    assert choice["robust"] == 1.0  # log-centre of 0.1..10
    assert choice["stable_low"] < choice["robust"] < choice["stable_high"] and not choice["at_edge"]
    # the region stops at a gap: a dip below the tolerance splits it
    surface[0.3] = [0.90, 0.90, 0.90]
    assert (robust_choice(curve_rows(surface), tolerance=0.01)["stable_low"]) == 1.0
    # a hand computation of the tie between equally distant values: the smaller wins
    even = {1.0: [0.9, 0.9], 10.0: [0.9, 0.9], 100.0: [0.9, 0.9], 1000.0: [0.9, 0.9]}
    picked = robust_choice(curve_rows(even), tolerance=0.01)
    assert picked["robust"] == 10.0 and picked["at_edge"]


def seeded_rows(method: str, values: list[float], seconds: float, params: str) -> list[dict]:
    """One finished trial per seed of ``method`` with these validation ACCs."""
    return [{"method": method, "seed": s, "status": "finished", "val_acc": v, "searched": params,
             "time_total_s": seconds} for s, v in enumerate(values)]


# SPP 0.9825 ± 0.0035, EWC 0.9821 ± 0.0030, fine-tuning 0.9817 ± 0.0035, LwF 0.905
FOUR = pd.DataFrame(seeded_rows("spp", [0.9790, 0.9825, 0.9860], 20.0, "lam,lr")
                    + seeded_rows("ewc", [0.9791, 0.9821, 0.9851], 25.0, "lam,lr")
                    + seeded_rows("finetune", [0.9782, 0.9817, 0.9852], 10.0, "lr")
                    + seeded_rows("lwf", [0.90, 0.905, 0.91], 12.0, "lam,lr"))


def test_only_methods_equivalent_to_the_leader_may_replace_it_by_the_simplest_cheapest() -> None:
    ties = tie_table(FOUR, ["spp", "ewc", "finetune", "lwf"])
    # by hand, seeds paired: EWC − SPP = +0.0001, −0.0004, −0.0009 (mean −0.0004, std 0.0005; 95%
    # interval ±4.303·0.0005/√3 = ±0.00124, inside ±0.01); fine-tuning is 0.0008 behind on every
    # seed (consistently below, and inside the margin); LwF 0.0775 behind
    assert list(ties["equivalent_to_leader"]) == [True, True, True, False]
    assert ties.loc[1, "low"] == pytest.approx(-0.0004 - 4.302653 * 0.0005 / 3 ** 0.5, abs=1e-6)
    assert ties.loc[2, "vs_leader"] == "below" and ties.loc[3, "vs_leader"] == "below"
    assert ties.loc[0, "std"] == pytest.approx(0.0035) and ties.loc[3, "mean"] == pytest.approx(0.905)
    assert simplest_of_tied(ties) == "finetune"  # one hyperparameter, the shortest runs


def test_among_equally_simple_methods_times_within_a_quarter_are_noise() -> None:
    # the better ranked wins, whichever happened to run faster (run-to-run jitter must not flip a
    # recommendation) ...
    noisy = pd.DataFrame([
        {"method": "lwf", "equivalent_to_leader": True, "parameters": 2, "seconds": 0.24},
        {"method": "mas", "equivalent_to_leader": True, "parameters": 2, "seconds": 0.21},
        {"method": "ewc", "equivalent_to_leader": True, "parameters": 2, "seconds": 0.10},
        {"method": "finetune", "equivalent_to_leader": False, "parameters": 1, "seconds": 0.01}])
    assert simplest_of_tied(noisy.iloc[:2]) == "lwf"  # 0.24 <= 1.25 * 0.21: tied in time too
    assert simplest_of_tied(noisy) == "ewc"  # ... a clearly cheaper one still wins (0.24, 0.21 > 0.125)
    assert simplest_of_tied(noisy.assign(seconds=math.nan)) == "lwf"  # no times: the ranking


def test_a_rival_not_separated_and_not_equivalent_leaves_the_leader_in_place() -> None:
    # 3.6 points behind a leader whose seeds agree: at 3 seeds not separated (paired t, p 0.069),
    # and not equivalent either: the words say "not separated"
    close = pd.DataFrame(seeded_rows("lwf", [0.9910, 0.9934, 0.9958], 12.0, "lam,lr")
                         + seeded_rows("finetune", [0.9377, 0.9574, 0.9771], 10.0, "lr"))
    parted = tie_table(close, ["lwf", "finetune"])
    from scipy import stats  # an independent computation of the reported p-value
    expected = stats.ttest_rel([0.9377, 0.9574, 0.9771], [0.9910, 0.9934, 0.9958]).pvalue
    assert parted.loc[1, "p_holm"] == pytest.approx(expected) and expected > 0.05
    assert parted.loc[1, "vs_leader"].startswith("not separated [") and not parted.loc[1, "equivalent_to_leader"]
    assert simplest_of_tied(parted) == "lwf"


def test_one_seed_shows_nothing_equivalent() -> None:
    alone = tie_table(FOUR[FOUR["seed"] == 0], ["spp", "ewc"])
    assert not alone.loc[1, "equivalent_to_leader"]  # no interval


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mine.npz and other.npz: overlapping blobs of 6 classes, so that the trials' scores differ."""
    folder = tmp_path_factory.mktemp("data")
    for name, seed in (("mine", 0), ("other", 5)):
        data, rng = blobs(n_classes=6, per_class=30, seed=seed), np.random.default_rng(seed)
        np.savez(folder / f"{name}.npz", **{k: v + rng.normal(0, 3, v.shape).astype(np.float32) if k[0] == "x"
                                            else v for k, v in data.items()})
    return folder


def recommend(data: Path, storage: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spp_sweep", "recommend", str(data / "mine.npz"),
                           "--tasks", "3", "--methods", "spp,finetune", "--budget", "3", "--seeds", "2",
                           "--curve-points", "3", "--set", "epochs=2", "--storage", str(storage),
                           "--quiet", *args], capture_output=True, text=True)


def test_recommend_with_first_tasks_selection_from_the_command_line(two_datasets: Path, tmp_path: Path,
                                                                    ray_local) -> None:
    """The report names the protocol and shows the importances (one row per searched
    hyperparameter) and the compute spent; the search saw 2 tasks, the evaluation all 3."""
    done = recommend(two_datasets, tmp_path, "--protocol", "first_tasks", "--first-tasks", "2", "--name", "first")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "first" / "recommendation"
    text = (out / "recommendation.md").read_text()
    assert "first-tasks selection" in text and "## Compute spent" in text and "## Which hyperparameters matter" in text
    importance = pd.read_csv(out / "hyperparameter_importance.csv")
    assert sorted(zip(importance["method"], importance["hyperparameter"])) == \
        [("finetune", "lr"), ("spp", "lam"), ("spp", "lr")]
    assert (out / "hyperparameter_importance.png").read_bytes()[:4] == b"\x89PNG"
    search = load_trials(tmp_path / "first" / "search")
    assert set(search.loc[search["phase"].str.startswith("optuna"), "tasks_done"]) == {2}
    assert set(search.loc[search["phase"] == "evaluate", "tasks_done"]) == {3}
    evaluation = pd.read_csv(out / "evaluation.csv")
    assert set(evaluation["method"]) == {"SPP", "Fine-tuning"}
    compute = pd.read_csv(out / "compute.csv")
    assert compute.loc[compute["phase"] == "optuna", "trial_tasks"].item() == 2 * 3 * 2  # 2 methods, 3 each, 2 tasks


def test_recommend_with_transfer_selection_from_the_command_line(two_datasets: Path, tmp_path: Path,
                                                                 ray_local) -> None:
    done = recommend(two_datasets, tmp_path, "--protocol", "transfer", "--tune-on", str(two_datasets / "other.npz"),
                     "--tune-on-option", "n_tasks=3", "--name", "transfer", "--curve-points", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "transfer" / "recommendation" / "recommendation.md").read_text()
    assert "transfer selection" in text and "drop (val ACC)" in text


@pytest.mark.parametrize("args, message", [
    (("--protocol", "transfer"), "--tune-on OTHER"),
    (("--tune-on", "{data}/other.npz"), "add --protocol transfer"),
    (("--protocol", "first_tasks", "--first-tasks", "1"), "at least 2 tasks"),
    (("--protocol", "first_tasks", "--first-tasks", "3", "--name", "k3"), "has 3 tasks"),
    (("--protocol", "transfer", "--tune-on", "{data}/other.npz", "--name", "bare"),
     "the benchmark to tune on (arrays): say how classes form tasks"),
    (("--protocol", "transfer", "--tune-on", "{data}/other.npz", "--tune-on-option", "n_tasks=2", "--name", "shape"),
     "same scenario"),
])
def test_a_protocol_recommend_cannot_follow_is_one_line_and_writes_nothing(args: tuple[str, ...], message: str,
                                                                          two_datasets: Path, tmp_path: Path) -> None:
    bad = recommend(two_datasets, tmp_path / "rec", *(a.format(data=two_datasets) for a in args))
    assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())  # nothing half-written


def test_importances_need_the_searched_space_and_enough_trials(tmp_path: Path) -> None:
    import json

    from spp_sweep import trial_files
    from spp_sweep.sweep.study import load_study

    (tmp_path / "study.yaml").write_text("benchmark: split_digits\nfixed: {validation: 0.2}\n"
                                         "search: {sampler: tpe, metric: val_acc}\nmethods:\n  spp:\n    space:\n"
                                         "      lam: {loguniform: [0.1, 100]}\n      lr: {loguniform: [0.001, 0.3]}\n")
    rng = np.random.default_rng(0)
    lam, lr = 10 ** rng.uniform(-1, 2, 12), 10 ** rng.uniform(-3, -0.5, 12)
    trials = pd.DataFrame({"phase": "optuna-spp", "method": "spp", "status": "finished", "lam": lam, "lr": lr,
                           "val_acc": 0.5 + 0.1 * np.log10(lr)})  # only lr matters
    assert hyperparameter_importances(tmp_path, trials).empty  # no plan.json: analysis never parses the study
    plan = load_study(tmp_path / "study.yaml").plan()
    assert list(hyperparameter_importances(tmp_path, trials, plan)["hyperparameter"]) == ["lam", "lr"]
    (tmp_path / trial_files.PLAN).write_text(json.dumps(plan))  # what a sweep writes at its start
    table = hyperparameter_importances(tmp_path, trials).set_index("hyperparameter")
    assert list(table.index) == ["lam", "lr"] and table.loc["lr", "importance"] > 0.8
    assert hyperparameter_importances(tmp_path, trials.iloc[:2])["importance"].isna().all()
    # recommend reports one search twice (its report, the recommendation): the second reads the
    # first fit back, and trials that differ are fitted anew
    from analysis import selection

    hits = selection._fanova.cache_info().hits
    again = hyperparameter_importances(tmp_path, trials).set_index("hyperparameter")
    assert selection._fanova.cache_info().hits == hits + 1 and again.equals(table)
    changed = hyperparameter_importances(tmp_path, trials.assign(val_acc=0.5 + 0.1 * np.log10(lam)))
    assert selection._fanova.cache_info().hits == hits + 1
    assert changed.set_index("hyperparameter").loc["lam", "importance"] > 0.8

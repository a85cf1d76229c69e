"""Section 4.2.5's parameter analysis: the three quantities by hand on tiny arrays, and the
engine's opt-in parameter snapshots (files, resume)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.parameters import (
    change_and_importance,
    frechet_distance,
    importance_similarity,
    per_weight,
    weighted_change,
)
from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from tests.conftest import resumed_after_second_task


def saved_by_hand() -> dict[str, np.ndarray]:
    """Two tasks, one 2x2 weight and one bias (biases are left out of every quantity)."""
    return {
        "task0/w": np.array([[1.0, 2.0], [3.0, 4.0]]), "task0/b": np.zeros(2),
        "task1/w": np.array([[1.0, 0.0], [3.0, 7.0]]), "task1/b": np.ones(2),
        "importance0/w": np.array([[4.0, 2.0], [0.0, 1.0]]), "importance0/b": np.ones(2),
        "importance1/w": np.array([[1.0, 1.0], [2.0, 2.0]]), "importance1/b": np.ones(2),
    }


def test_frechet_distance_by_hand() -> None:
    # sorted {0, 1, 2, 3} against sorted {1, 2, 3, 4}: every quantile 1 apart -> W2 = 1
    assert frechet_distance(np.array([3, 0, 2, 1]), np.array([4, 1, 3, 2])) == pytest.approx(1.0)
    # sorted {0, 0} vs {0, 2}: sqrt((0 + 4) / 2)
    assert frechet_distance(np.array([0, 0]), np.array([2, 0])) == pytest.approx(math.sqrt(2))
    # the order of values inside a layer does not matter: a distance between distributions
    assert frechet_distance(np.array([1, 5, 9]), np.array([9, 1, 5])) == 0.0
    # Gaussian form: means 1.5 and 2.5, population stds 0.5 and 1.5 -> sqrt(1 + 1)
    assert frechet_distance(np.array([1, 2]), np.array([1, 4]), kind="gaussian") == pytest.approx(math.sqrt(2))
    # different sizes: quantiles on a common grid; two identical distributions stay at 0
    assert frechet_distance(np.array([0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)


def test_importance_similarity_normalises_each_side_by_its_maximum() -> None:
    table = importance_similarity(saved_by_hand()).set_index("layer")
    assert list(table.index) == ["w"]  # the bias is not a layer's weight matrix
    first = np.sort(np.array([4.0, 2.0, 0.0, 1.0]) / 4)  # 0, .25, .5, 1
    last = np.sort(np.array([1.0, 1.0, 2.0, 2.0]) / 2)   # .5, .5, 1, 1
    expected = math.sqrt(np.mean((first - last) ** 2))   # sqrt((.25 + .0625 + .25 + 0) / 4)
    assert table.loc["w", "frechet"] == pytest.approx(expected)
    assert expected == pytest.approx(math.sqrt(0.5625 / 4))


def test_weighted_change_is_the_first_tasks_penalty_at_the_last_parameters() -> None:
    table = weighted_change(saved_by_hand()).set_index("layer")
    # Ω1 * (θ2 − θ1)^2 = 4*0 + 2*4 + 0*0 + 1*9
    assert table.loc["w", "weighted_change"] == pytest.approx(17.0)
    assert table.loc["w", "change"] == pytest.approx(0 + 4 + 0 + 9)


def test_per_weight_statistics_by_hand() -> None:
    row = per_weight(saved_by_hand(), top=0.25).set_index("layer").loc["w"]
    # Ω1 = [4, 2, 0, 1] ranks 4, 3, 1, 2; Ω2 = [1, 1, 2, 2] ranks 1.5, 1.5, 3.5, 3.5
    r1, r2 = np.array([4, 3, 1, 2.0]), np.array([1.5, 1.5, 3.5, 3.5])
    assert row["rank_corr_importance"] == pytest.approx(np.corrcoef(r1, r2)[0, 1])
    # weight by weight: [1, .5, 0, .25] against [.5, .5, 1, 1]
    assert row["matched_distance"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 0.5625) / 4))
    # |Δθ| = [0, 2, 0, 3] ranks 1.5, 3, 1.5, 4
    assert row["rank_corr_change"] == pytest.approx(np.corrcoef(r1, [1.5, 3, 1.5, 4])[0, 1])
    assert row["move_top"] == 0.0  # the most important weight (Ω 4) did not move
    assert row["move_bottom_half"] == pytest.approx((0 + 3) / 2)  # Ω 0 and 1: |Δθ| 0 and 3


def test_change_heatmap_values() -> None:
    change, importance = change_and_importance(saved_by_hand(), "w")
    np.testing.assert_array_equal(change, [[0.0, -2.0], [0.0, -3.0]])
    np.testing.assert_array_equal(importance, [[4.0, 2.0], [0.0, 1.0]])


def test_saved_parameters_are_the_models_after_each_task_and_survive_a_resume() -> None:
    config = RunConfig(method="finetune", benchmark="permuted_digits", benchmark_options={"n_tasks": 3}, epochs=2,
                       save_parameters=True)
    experiment = Experiment(config)
    result = experiment.run()
    assert len(result.parameters) == len(result.probe_importances) == 3
    final = dict(experiment.model.named_shared_parameters())
    for name, value in result.parameters[-1].items():
        torch.testing.assert_close(value, final[name].detach().cpu())
    assert not torch.equal(result.parameters[0]["trunk.1.weight"], result.parameters[2]["trunk.1.weight"])
    assert all((v >= 0).all() for v in result.probe_importances[0].values())  # eq. 3 clamps at 0
    plain = Experiment(RunConfig(**{**config.to_dict(), "save_parameters": False})).run()
    assert plain.accuracy_matrix == result.accuracy_matrix  # measuring changes nothing
    resumed = resumed_after_second_task(config)
    assert resumed.accuracy_matrix == result.accuracy_matrix
    for before, after in zip(result.parameters, resumed.parameters):
        for name in before:
            torch.testing.assert_close(before[name], after[name])


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
def test_the_parameter_analysis_study_draws_figures_7b_7c_and_8(tmp_path, ray_local) -> None:
    import dataclasses

    from analysis.report import write_report
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import load_study
    from tests.conftest import REPO

    study = load_study(REPO / "studies" / "parameter_analysis.yaml")
    study = dataclasses.replace(study, storage=str(tmp_path), seeds=(0,), fixed={**study.fixed, "epochs": 2},
                                benchmark_options={"n_tasks": 3})
    outcome = run_sweep(study, SweepOptions(verbose=0))
    report = write_report(outcome.root, tmp_path / "report")
    text = report.read_text()
    assert "## Parameter analysis (section 4.2.5" in text
    for stem in ("parameter_similarity", "parameter_change", "parameter_change_heatmaps"):
        assert (tmp_path / "report" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "parameter_analysis.csv")
    assert set(table["method"]) == {"spp", "finetune", "sgd"} and set(table["layer"]) == {"trunk.1.weight",
                                                                                          "trunk.3.weight"}
    assert (table["frechet"] >= 0).all() and (table["weighted_change"] > 0).all()


def test_importance_placement_by_hand() -> None:
    from analysis.importance import placement

    arrays = {"task0/w": np.ones((2, 2)), "task1/w": np.array([[0.0, 1.0], [0.0, 3.0]]),
              "task1/b": np.array([4.0, 0.0]),
              "task1/v": np.array([[0.0, 0.0, 0.0, 2.0]])}
    found = placement(arrays)  # the last task: total 1 + 3 + 4 + 2 = 10
    assert found["bias_share"] == pytest.approx(0.4) and found["largest_tensor"] in ("b", "w")
    assert found["largest_tensor_share"] == pytest.approx(0.4)
    assert found["zeros_in_weights"] == pytest.approx(5 / 8)  # w: 2 of 4, v: 3 of 4
    assert found["zeros_worst_weight_tensor"] == pytest.approx(0.75)

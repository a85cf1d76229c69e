"""A sweep's phases as data (sweep/runner.sweep_phases): which phases a study runs, in which
order, on which data, with the names trial_files defines once."""

from __future__ import annotations

from spp_sweep import trial_files
from spp_sweep.sweep.runner import SweepOptions, sweep_phases
from spp_sweep.sweep.study import parse_study


def test_a_study_runs_the_grid_the_optuna_search_its_final_seeds_and_their_evaluation_in_order() -> None:
    study = parse_study({"benchmark": "split_digits", "search": {"sampler": "tpe", "num_samples": 2},
                         "methods": {"spp": {"space": {"lam": {"loguniform": [0.1, 10.0]}}}, "finetune": {}},
                         "final": {"seeds": 2}, "selection": {"protocol": "first_tasks", "tasks": 2}})
    phases = sweep_phases(study, "/nowhere/sweep", {}, SweepOptions(verbose=0))
    assert [p.name for p in phases] == [trial_files.GRID_PHASE, trial_files.OPTUNA_PHASE, trial_files.FINAL_PHASE,
                                        trial_files.EVALUATE_PHASE] == ["grid", "optuna", "final", "evaluate"]
    grid, optuna, final, evaluate = phases
    assert [p["method"] for p in grid.points([])] == ["finetune"]  # spp's continuous space goes to Optuna
    assert optuna.searcher is not None and optuna.keepers == ["/nowhere/sweep/optuna/rungs-spp"]
    assert grid.part == optuna.part == final.part == study.selection_part()  # chosen on the first 2 tasks
    assert evaluate.part == study.study_part()  # evaluated on the full stream


def test_a_grid_study_without_final_seeds_is_one_phase() -> None:
    study = parse_study({"benchmark": "split_digits", "methods": {"spp": {"space": {"lam": [1.0, 2.0]}}}, "seeds": 2})
    (grid,) = sweep_phases(study, "/nowhere/sweep", {}, SweepOptions(verbose=0))
    assert grid.name == "grid" and len(grid.points([])) == 4  # 2 values x 2 seeds

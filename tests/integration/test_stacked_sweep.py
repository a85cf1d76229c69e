"""Stacked trials in sweeps (spp_sweep/sweep/stack_plan.py): one row per configuration as
unstacked, the same numbers, and resume after a killed worker or an unreadable sweep state."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd

from analysis.load import load_matrices, load_trials, read_reports
from spp_sweep.config import RunConfig
from spp_sweep.engine import run_experiment
from spp_sweep.sweep.runner import concurrency, run_sweep
from spp_sweep.sweep.stack_plan import plan_stacks
from spp_sweep.sweep.study import load_study, parse_study
from tests.conftest import REPO
from tests.faults import with_faults
from tests.unit.test_stacked import ACCURACY_TOLERANCE

from .test_sweep import QUIET, fresh_reports, study_of


def test_stacking_groups_what_may_differ_and_says_how() -> None:
    study = load_study(REPO / "studies" / "lambda_robustness.yaml")
    points = [study.trial_spec(m, p, s) for m in study.methods for p in m.grid_points() for s in study.seeds]
    plan = plan_stacks(study, points, study.study_part(), slots=2)
    # 4 regularisers x 2 penalty steps (not stackable) of 17 λ x 3 seeds, fine-tuning and joint over 3 seeds
    assert sorted(len(s.get("members", [s])) for s in plan.specs) == [3, 3] + [51] * 8
    assert "414 configurations in 10 trials" in plan.summary
    for spec in plan.specs:
        members = spec.get("members", [spec])
        assert len({(m["method"], m["params"].get("penalty_step")) for m in members}) == 1
    capped = plan_stacks(dataclasses.replace(study, stack=10), points, study.study_part(), slots=2)
    assert max(len(s.get("members", [s])) for s in capped.specs) == 10
    assert plan_stacks(dataclasses.replace(study, stack="off"), points, study.study_part(), slots=2).specs == points
    many_slots = plan_stacks(study, points, study.study_part(), slots=16)  # auto keeps every slot busy
    assert len(many_slots.specs) >= 16


def test_auto_leaves_large_members_alone_on_a_cpu_and_a_number_forces_them() -> None:
    study = parse_study({"benchmark": "split_digits", "fixed": {"model_options": {"hidden": [512, 512]}},
                         "methods": {"spp": {"space": {"lam": [1.0, 2.0, 3.0]}}}})  # 300k multiply-adds
    points = [study.trial_spec(study.methods[0], p, 0) for p in study.methods[0].grid_points()]
    plan = plan_stacks(study, points, study.study_part(), slots=1)
    assert plan.specs == points and "at most 100,000 multiply-adds per sample" in plan.summary
    forced = plan_stacks(dataclasses.replace(study, stack=3), points, study.study_part(), slots=1)
    assert len(forced.specs) == 1 and len(forced.specs[0]["members"]) == 3


def test_stack_setting_is_checked() -> None:
    base = {"benchmark": "split_digits", "methods": {"spp": {}}}
    assert parse_study({**base, "stack": False}).stack == "off"  # YAML's bare `off`
    assert parse_study({**base, "stack": 8}).stack == 8
    for bad in ("sometimes", 0, 2.5):
        try:
            parse_study({**base, "stack": bad})
        except Exception as error:  # noqa: BLE001
            assert "stack:" in str(error)
        else:
            raise AssertionError(f"stack: {bad!r} was accepted")


def test_a_stacked_sweep_has_the_rows_and_numbers_of_an_unstacked_one(tmp_path: Path, ray_local) -> None:
    methods = {"spp": {"space": {"lam": [0.5, 4.0, 1e5]}}, "finetune": {}}
    tables = {}
    for setting in ("auto", "off"):
        study = study_of(tmp_path, name=f"s-{setting}", methods=methods, seeds=2, stack=setting,
                         fixed={"epochs": 1, "validation": 0.2})
        outcome = run_sweep(study, QUIET)
        tables[setting] = load_trials(outcome.root)
        if setting == "auto":
            matrices = load_matrices(outcome.root)
            assert set(matrices["trial_id"]) == set(tables["auto"]["trial_id"])  # one matrix per configuration
    stacked, alone = tables["auto"], tables["off"]
    assert len(stacked) == len(alone) == 8 and stacked["stack"].notna().all()
    merged = pd.merge(stacked, alone, on=["method", "seed", "config"], suffixes=("", "_alone"))
    assert len(merged) == 8
    assert (merged["status"] == merged["status_alone"]).all()
    assert (merged[merged["config"] == "lam=1e+05"]["status"] == "diverged").all()
    finished = merged[merged["status"] == "finished"]
    assert len(finished) == 6
    for metric in ("acc", "bwt", "val_acc"):
        assert ((finished[metric] - finished[f"{metric}_alone"]).abs() <= ACCURACY_TOLERANCE).all()
    assert set(stacked["threads"]) == {1}


def test_a_killed_stacked_trial_and_an_unreadable_state_resume(tmp_path: Path, ray_local) -> None:
    marker = tmp_path / "killed"
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [0.5, 1.0, 2.0]}}}, stack=3, max_failures=2)
    outcome = run_sweep(study, with_faults(QUIET), extra_config={"faults": {"kill_at_task": 2, "marker": str(marker)}})
    assert marker.exists()  # the stack's worker was killed after task 3
    trials = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    assert list(trials["lam"]) == [0.5, 1.0, 2.0] and set(trials["status"]) == {"finished"}
    folder = Path(trials.loc[0, "path"]).parent
    assert fresh_reports(str(folder)) == [1, 2, 3, 4, 5]  # task 3 redone once, tasks 1-2 not retrained
    final = read_reports(folder)[-1]["members"]
    for member, lam in zip(final, (0.5, 1.0, 2.0)):
        alone = run_experiment(RunConfig(method="spp", benchmark="split_digits", epochs=1, threads=1,
                                         method_options={"lam": lam}))
        gaps = [abs(a - b) for r, s in zip(member["accuracy_matrix"], alone.accuracy_matrix) for a, b in zip(r, s)]
        assert max(gaps) <= ACCURACY_TOLERANCE

    # a driver killed while Ray Tune wrote its state, the stack cut after task 4 (a fresh sweep: a
    # trial retried after an error keeps its error.txt, and recovery counts such a cut trial as errored)
    study = dataclasses.replace(study, name="cut")
    outcome = run_sweep(study, QUIET)
    folder = Path(load_trials(outcome.root).iloc[0]["path"]).parent
    final = read_reports(folder)[-1]["members"]
    grid = Path(outcome.root) / "grid"
    for state in grid.glob("experiment_state-*.json"):
        state.write_text("")
    matrices = [m["accuracy_matrix"] for m in final]
    lines = (folder / "result.json").read_text().splitlines()
    (folder / "result.json").write_text("\n".join(lines[:4]) + "\n")  # reports up to task 4
    shutil.rmtree(sorted(folder.glob("checkpoint_*"))[-1])
    run_sweep(study, dataclasses.replace(QUIET, resume=True))
    after = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    assert list(after["lam"]) == [0.5, 1.0, 2.0] and set(after["status"]) == {"finished"}
    revived = Path(after.loc[0, "path"]).parent
    assert fresh_reports(str(revived)) == [5]  # continued from its checkpoint after task 4, as one stack
    assert [m["accuracy_matrix"] for m in read_reports(revived)[-1]["members"]] == matrices


def test_a_stack_killed_after_asha_narrowed_it_resumes_narrowed_with_the_same_numbers(tmp_path: Path,
                                                                                       ray_local) -> None:
    """The planted grid of test_sweep's ASHA test as one stack: the weak members stop after task 1
    and leave the stack's model (stacked.py's repack); the worker is killed after task 3, and the
    stack restarts from its checkpoint after task 2, which holds only the survivors, to the
    matrices of the run that was not killed."""
    marker = tmp_path / "killed"
    matrices = {}
    for name, extra in (("whole", None), ("killed", {"faults": {"kill_at_task": 2, "marker": str(marker)}})):
        study = study_of(tmp_path, name=name, methods={"spp": {"space": {"lr": [0.1, 1e-6, 0.05, 2e-6]}}},
                         stack="auto", max_failures=2,
                         scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
        outcome = run_sweep(study, with_faults(QUIET) if extra else QUIET, extra_config=extra)
        trials = load_trials(outcome.root)
        assert len(trials) == 4 and set(trials[trials["lr"] < 1e-5]["status"]) == {"stopped"}
        folder = Path(trials.iloc[0]["path"]).parent
        matrices[name] = [m["accuracy_matrix"] for m in read_reports(folder)[-1]["members"]]
        if extra:
            assert marker.exists() and fresh_reports(str(folder)) == [1, 2, 3, 4, 5]  # task 3 redone only
    assert matrices["killed"] == matrices["whole"]


def test_a_batched_tpe_phase_trains_its_suggestions_stacked_and_tells_each_one_back(tmp_path: Path, ray_local) -> None:
    """stack: 3 in a TPE phase: 7 configurations in 3 trials (3, 3, 1), one row per configuration,
    each an Optuna trial of its own with the member's score; a configuration's numbers equal those
    of the same configuration trained alone."""
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": {"loguniform": [0.1, 100.0]},
                                                          "lr": {"loguniform": [0.01, 0.3]}}}},
                     search={"sampler": "tpe", "seed": 4, "num_samples": 7, "metric": "val_acc"}, stack=3,
                     fixed={"epochs": 1, "validation": 0.2})
    outcome = run_sweep(study, QUIET)
    trials = load_trials(outcome.root)
    assert len(trials) == 7 and trials["trial_id"].is_unique and set(trials["status"]) <= {"finished", "diverged"}
    assert sorted(trials.groupby("stack", dropna=False).size().tolist()) == [1, 3, 3]  # the last one alone
    assert len({(round(a, 9), round(b, 9)) for a, b in zip(trials["lam"], trials["lr"])}) == 7
    # a searcher's phase may run a trial on every slot (Ray Tune alone keeps one pending); a
    # grid phase keeps the study's own limit (none here). Whether two short trials then land on
    # two workers depends on timing (Ray may reuse the first one's), so the setting is checked
    assert concurrency(study, searched=True) == 2 and concurrency(study, searched=False) is None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalStorage(JournalFileBackend(f"{outcome.root}/optuna/optuna.journal"))
    kept = optuna.load_study(study_name="optuna-spp", storage=journal)
    told = sorted((round(t.params["trial/params/lam"], 9), t.value) for t in kept.trials
                  if t.state == optuna.trial.TrialState.COMPLETE)
    assert told == sorted((round(lam, 9), score) for lam, score in zip(trials["lam"], trials["score"]))
    finished = trials[trials["status"] == "finished"].iloc[0]
    alone = run_experiment(RunConfig.from_dict({"method": "spp", "benchmark": "split_digits", "epochs": 1,
                                                "validation": 0.2, "seed": 0, "lr": finished["lr"],
                                                "method_options": {"lam": finished["lam"]}}))
    assert abs(alone.metrics["acc"] - finished["acc"]) <= ACCURACY_TOLERANCE


def test_a_convolutional_stacked_study_run_twice_gives_the_same_table(tmp_path: Path, ray_local) -> None:
    """A CNN member's numbers depend on its stack-mates (grouped-convolution rounding), so a rerun
    reproduces a table only where the plan is the same: it is a function of the study and the
    machine's total memory, never of what is free at the moment (stacking.trial_memory)."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    for label in range(4):  # four classes of noisy 8x8 pictures, brightness by class
        (tmp_path / "pics" / f"c{label}").mkdir(parents=True)
        for k in range(16):
            pixels = np.clip(generator.normal(40 + 50 * label, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pics" / f"c{label}" / f"{k}.png")
    tables = []
    for name in ("first", "again"):
        study = study_of(tmp_path, name=name, benchmark="image_folder", stack=3,
                         benchmark_options={"path": str(tmp_path / "pics"), "n_tasks": 2},
                         fixed={"epochs": 2, "model": "vgg9", "model_options": {"channels": [4, 8, 8], "fc": 16},
                                "batch_size": 8, "lr": 0.05},
                         methods={"ewc": {"space": {"lam": [0.5, 2.0, 8.0, 32.0]}}})
        tables.append(load_trials(run_sweep(study, QUIET).root).sort_values("config").reset_index(drop=True))
    first, again = tables
    assert len(first) == 4 and sorted(first["stack_members"].fillna(1)) == [1, 3, 3, 3]
    assert list(first["stack_members"].fillna(1)) == list(again["stack_members"].fillna(1))
    for column in ("acc", "bwt"):
        assert list(first[column]) == list(again[column])  # to the last bit

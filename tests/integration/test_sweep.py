"""Sweeps through Ray Tune, in this process on one shared local Ray instance."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from analysis.load import load_trials, read_reports
from spp_sweep.config import RunConfig
from spp_sweep.engine import run_experiment
from spp_sweep.errors import ConfigError
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import load_study, parse_study
from tests.conftest import REPO
from tests.faults import with_faults

QUIET = SweepOptions(verbose=0)


def study_of(tmp_path: Path, **values) -> object:
    base = {"name": "s", "benchmark": "split_digits", "fixed": {"epochs": 1}, "storage": str(tmp_path),
            "resources": {"cpu": 1}, "max_failures": 1}
    return parse_study({**base, **values})


def fresh_reports(trial_path: str) -> list[int]:
    """Task numbers a trial trained and reported (replays of a finished trial left out)."""
    return [r["task"] for r in read_reports(Path(trial_path)) if not r.get("replayed")]


def test_lambda_robustness_study_gives_one_result_per_lambda_and_seed(tmp_path: Path, ray_local) -> None:
    study = load_study(REPO / "studies" / "lambda_robustness.yaml")
    spp = next(m for m in study.methods if m.method == "spp")
    study = dataclasses.replace(study, methods=(spp,), fixed={"epochs": 1}, storage=str(tmp_path))
    outcome = run_sweep(study, QUIET)
    trials = load_trials(outcome.root)
    expected = {(float(lam), step, seed) for lam in spp.space["lam"].values
                for step in spp.space["penalty_step"].values for seed in study.seeds}
    found = zip(trials["lam"].astype(float), trials["penalty_step"], trials["seed"])
    assert sorted(found) == sorted(expected)  # each exactly once
    assert not (trials["status"] == "diverged")[trials["penalty_step"] == "implicit"].any()  # stable at any λ
    assert set(trials["status"]) <= {"finished", "diverged"}
    finished = trials[trials["status"] == "finished"]
    assert len(finished) >= 3 * 9  # the authors' λ set trains fine for one epoch
    assert finished[["acc", "bwt", "fwt", "smt"]].notna().all().all()
    assert (finished["acc"] > 0.5).all()
    assert set(trials["threads"]) == {1} and set(trials["device"]) == {"cpu"}  # exactly the 1 CPU Ray gave
    assert (Path(outcome.root) / "study.yaml").exists()


def test_diverged_and_errored_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path, ray_local) -> None:
    study = study_of(tmp_path, methods={"spp": {"space": {"lr": [1e4, 0.1]}}, "finetune": {}}, max_failures=0)
    outcome = run_sweep(study, with_faults(QUIET), extra_config={"faults": {"method": "finetune", "raise_at_task": 1}})
    trials = load_trials(outcome.root).set_index(["method", "lr"], drop=False)
    diverged = trials.loc[("spp", 1e4)]
    assert diverged["status"] == "diverged" and diverged["score"] == -1.0
    assert diverged[["acc", "bwt"]].isna().all() and diverged["diverged_at_task"] == 1
    assert trials.loc[("spp", 0.1), "status"] == "finished"
    errored = trials[trials["method"] == "finetune"].iloc[0]
    assert errored["status"] == "errored" and "injected failure" in errored["error"]


def test_a_killed_trial_resumes_from_its_last_task_with_identical_numbers(tmp_path: Path, ray_local) -> None:
    marker = tmp_path / "killed"
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [4.0]}}}, fixed={"epochs": 3}, max_failures=2)
    outcome = run_sweep(study, with_faults(QUIET), extra_config={"faults": {"kill_at_task": 2, "marker": str(marker)}})
    assert marker.exists()  # the worker process really was killed after task 3's training
    trial = load_trials(outcome.root).iloc[0]
    assert trial["status"] == "finished"
    assert fresh_reports(trial["path"]) == [1, 2, 3, 4, 5]  # task 3 redone once, tasks 1-2 not retrained
    final = read_reports(Path(trial["path"]))[-1]
    reference = run_experiment(RunConfig(method="spp", benchmark="split_digits", epochs=3, threads=1,
                                         method_options={"lam": 4.0}))
    assert final["accuracy_matrix"] == reference.accuracy_matrix  # bit-identical on CPU


def test_seeded_tpe_suggests_the_same_configurations_twice(tmp_path: Path, ray_local) -> None:
    values = dict(methods={"spp": {"space": {"lam": {"loguniform": [0.1, 10.0]}}}}, max_concurrent=1,
                  search={"sampler": "tpe", "seed": 3, "num_samples": 4})
    runs = []
    for name in ("first", "second"):
        outcome = run_sweep(study_of(tmp_path, name=name, **values), QUIET)
        trials = load_trials(outcome.root).sort_values("trial_id")
        runs.append(sorted(round(v, 12) for v in trials["lam"]))  # trial ids need not follow suggestion order
    assert len(runs[0]) == 4 and len(set(runs[0])) == 4
    assert runs[0] == runs[1]
    # the Optuna study is kept in the phase folder, for optuna-dashboard and optuna.visualization
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = outcome.root + "/optuna/optuna.journal"  # every method's study, optuna-METHOD
    kept = optuna.load_study(study_name="optuna-spp", storage=JournalStorage(JournalFileBackend(journal)))
    complete = [t for t in kept.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(round(t.params["trial/params/lam"], 12) for t in complete) == runs[1]
    assert sorted(t.value for t in complete) == sorted(trials["score"])


def test_final_phase_reruns_each_methods_best_configuration(tmp_path: Path, ray_local) -> None:
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [0.5, 4.0, 1e4]}}}, final={"seeds": [1, 2]})
    outcome = run_sweep(study, QUIET)
    assert outcome.phases == ["grid", "final"]
    trials = load_trials(outcome.root)
    grid, final = trials[trials["phase"] == "grid"], trials[trials["phase"] == "final"]
    best_lam = grid.sort_values(["score", "lam"], ascending=[False, True])["lam"].iloc[0]
    assert sorted(final["seed"]) == [1, 2] and set(final["lam"]) == {best_lam}


def test_a_gpu_study_without_gpus_fails_at_once_and_writes_nothing(tmp_path: Path, ray_local) -> None:
    study = study_of(tmp_path, methods=["spp"], resources={"cpu": 1, "gpu": 0.25})
    with pytest.raises(ConfigError, match="no GPU"):
        run_sweep(study, QUIET)
    assert not any(tmp_path.iterdir())


def test_an_existing_sweep_needs_resume_and_resume_needs_a_sweep(tmp_path: Path, ray_local) -> None:
    study = study_of(tmp_path, methods=["finetune"])
    with pytest.raises(ConfigError, match="no sweep"):
        run_sweep(study, SweepOptions(verbose=0, resume=True))
    outcome = run_sweep(study, QUIET)
    with pytest.raises(ConfigError, match="--resume"):
        run_sweep(study, QUIET)
    again = run_sweep(study, SweepOptions(verbose=0, resume=True))  # finished: nothing reruns
    trial = load_trials(again.root).iloc[0]
    assert fresh_reports(trial["path"]) == [1, 2, 3, 4, 5]
    assert json.loads((Path(outcome.root) / "grid" / Path(trial["path"]).name / "params.json").read_text())


@pytest.mark.parametrize("stack", ["auto", "off"])
def test_asha_stops_each_configuration_that_falls_behind_stacked_or_alone_as_rays_asha_would(
        tmp_path: Path, ray_local, stack: str) -> None:
    """A planted grid: lr 1e-6 and 2e-6 learn nothing in an epoch (chance ACC), 0.1 and 0.05 learn.
    Stacked (one trial of four members) or one per trial, the weak ones are stopped after their
    first rung, the first configuration (never behind anything recorded) finishes, and every
    decision is the one Ray's ASHAScheduler makes fed the same reported scores in the same order."""
    from spp_sweep import trial_files
    from spp_sweep.sweep.recovery import point_key
    from spp_sweep.sweep.status import status_text
    from tests.unit.sweep.test_rungs import ray_decisions

    study = study_of(tmp_path, methods={"spp": {"space": {"lr": [0.1, 1e-6, 0.05, 2e-6]}}}, stack=stack,
                     scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2}, max_concurrent=1)
    outcome = run_sweep(study, QUIET)
    trials = load_trials(outcome.root)
    assert len(trials) == 4 and ((trials["stack_members"] == 4).all() if stack == "auto" else "stack" not in trials)
    weak = trials[trials["lr"] < 1e-5]
    assert set(weak["status"]) == {"stopped"} and (weak["tasks_done"] == 1).all() and weak["acc"].isna().all()
    assert trials.loc[trials["lr"] == 0.1, "status"].tolist() == ["finished"]
    scores = {}  # (configuration, task) -> the score its trial reported then
    for folder in {Path(p).parent if stack == "auto" else Path(p) for p in trials["path"]}:
        spec = json.loads((folder / "params.json").read_text())["trial"]
        specs = spec.get("members", [spec])
        for report in read_reports(folder):
            for member, values in zip(specs, report.get("members", [report])):
                scores.setdefault((point_key(member), values["task"]), values["score"])
    saved = trial_files.read_rungs(Path(outcome.root) / "grid")
    assert saved is not None and len(saved["decisions"]) >= 6
    asked = [(key, task, scores[(key, task)]) for key, task, _ in saved["decisions"]]
    assert [stop for _, _, stop in saved["decisions"]] == ray_decisions(asked, 1, 5, 2)
    assert "stopped" in status_text(Path(outcome.root))
    if stack == "auto":  # the stopped members left the stack's model: its last checkpoint holds the others only
        import torch

        folder = Path(trials["path"].iloc[0]).parent
        state = torch.load(max(folder.glob("checkpoint_*")) / trial_files.STATE, weights_only=True)
        running = [k for k, record in enumerate(state["members"]) if record["status"] != "stopped"]
        assert state["in_model"] == running and len(running) <= 2
        # each checkpoint records the stack's progress (tasks summed over members), rising
        done = [json.loads((c / trial_files.PROGRESS).read_text())["tasks_done"]
                for c in sorted(folder.glob("checkpoint_*"))]
        assert done and all(a < b for a, b in zip(done, done[1:], strict=False))


def test_the_optuna_phase_searches_every_method_in_one_experiment_with_asha_rungs_per_method(
        tmp_path: Path, ray_local) -> None:
    """Two methods searched by TPE share one Ray Tune experiment (one phase's fixed costs), each
    with its own Optuna study and budget; under ASHA each method keeps its own rungs, so a
    configuration is compared only with its own method's."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from spp_sweep import trial_files

    space = {"lr": {"loguniform": [1e-6, 0.1]}}
    study = study_of(tmp_path, methods={"spp": {"space": space}, "finetune": {"space": space}}, stack="off",
                     search={"sampler": "tpe", "seed": 1, "num_samples": 3},
                     scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    outcome = run_sweep(study, QUIET)
    assert outcome.phases == ["optuna"]
    trials = load_trials(outcome.root)
    assert trials.groupby(["phase", "method"]).size().to_dict() == {("optuna", "finetune"): 3, ("optuna", "spp"): 3}
    journal = JournalStorage(JournalFileBackend(f"{outcome.root}/optuna/optuna.journal"))
    for method in ("spp", "finetune"):
        told = optuna.load_study(study_name=f"optuna-{method}", storage=journal).trials
        mine = trials[(trials["phase"] == "optuna") & (trials["method"] == method)]
        assert sorted(round(t.params["trial/params/lr"], 12) for t in told) == sorted(round(v, 12) for v in mine["lr"])
        saved = trial_files.read_rungs(Path(outcome.root) / "optuna" / f"rungs-{method}")
        assert saved is not None
        keys = {key for key, _, _ in saved["decisions"]}  # recovery.point_key: [method, seed, params]
        assert {json.loads(key)[0] for key in keys} == {method} and len(keys) == 3  # its own three only


def test_a_restored_trial_continues_from_its_newest_readable_checkpoint(tmp_path: Path, capsys) -> None:
    from spp_sweep.engine import Experiment
    from spp_sweep.sweep.trainable import STATE_FILE, newest_first, resume_from

    config = RunConfig(method="spp", benchmark="split_digits", epochs=1, threads=1).resolved()
    trained = Experiment(config)
    for index, task in enumerate([0, 1]):
        trained.train_task(task)
        trained.record.rows.append(trained.evaluate())
        folder = tmp_path / f"checkpoint_00000{index}"
        folder.mkdir()
        torch.save(trained.state_dict(), folder / STATE_FILE)
    order = newest_first(tmp_path)
    assert [f.name for f in order] == ["checkpoint_000001", "checkpoint_000000"]
    resumed = Experiment(config)
    assert resume_from(order, resumed) is None and resumed.next_task == 2  # the newest: after task 2

    (tmp_path / "checkpoint_000001" / STATE_FILE).write_bytes(b"cut short")  # a copy killed midway
    older = Experiment(config)
    assert resume_from(newest_first(tmp_path), older) is None and older.next_task == 1  # falls back one task
    assert "checkpoint_000001 is unusable" in capsys.readouterr().err

    (tmp_path / "checkpoint_000000" / STATE_FILE).write_bytes(b"")
    fresh = Experiment(config)
    assert resume_from(newest_first(tmp_path), fresh) is None and fresh.next_task == 0  # starts over
    assert "rerunning this trial from its first task" in capsys.readouterr().err


def test_checkpoints_are_ordered_by_their_recorded_progress_not_by_the_clock(tmp_path: Path) -> None:
    """A clock set back between two checkpoints gives the later one the older file times; the
    progress each checkpoint records still puts it first."""
    import os

    from spp_sweep import trial_files
    from spp_sweep.sweep.trainable import STATE_FILE, newest_first

    for index, done in enumerate([1, 2]):
        folder = tmp_path / f"checkpoint_00000{index}"
        folder.mkdir()
        (folder / STATE_FILE).write_bytes(b"state")
        (folder / trial_files.PROGRESS).write_text(json.dumps({"tasks_done": done}))
    later = tmp_path / "checkpoint_000001" / STATE_FILE
    os.utime(later, (1_000_000, 1_000_000))  # written "in 1970": after the clock was set back
    assert [f.name for f in newest_first(tmp_path)] == ["checkpoint_000001", "checkpoint_000000"]
    (tmp_path / "checkpoint_000001" / trial_files.PROGRESS).write_text("{cut")  # unreadable: ranks last
    assert [f.name for f in newest_first(tmp_path)] == ["checkpoint_000000", "checkpoint_000001"]


def test_an_unreadable_sweep_state_resumes_from_the_trial_folders(tmp_path: Path, ray_local) -> None:
    """A driver killed while Ray Tune writes its state leaves an empty state file; --resume
    keeps the finished trials, continues the cut one from its checkpoint, reruns the lost one."""
    import shutil

    # one configuration per trial: this test cuts trial folders one configuration at a time
    # (the stacked version: test_a_killed_stacked_trial_and_an_unreadable_state_resume)
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [0.5, 1.0, 2.0]}}}, stack="off")
    outcome = run_sweep(study, QUIET)
    grid = Path(outcome.root) / "grid"
    before = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    for state in grid.glob("experiment_state-*.json"):
        state.write_text("")
    cut = Path(before.loc[1, "path"])  # lam 1.0: as if killed after task 4, before the final report
    matrix = read_reports(cut)[-1]["accuracy_matrix"]
    (cut / "result.json").write_text("\n".join((cut / "result.json").read_text().splitlines()[:4]) + "\n")
    shutil.rmtree(sorted(cut.glob("checkpoint_*"))[-1])
    shutil.rmtree(before.loc[2, "path"])  # lam 2.0: never created before the kill

    run_sweep(study, dataclasses.replace(QUIET, resume=True))
    after = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    assert list(after["lam"]) == [0.5, 1.0, 2.0] and set(after["status"]) == {"finished"}
    assert after.loc[0, "trial_id"] == before.loc[0, "trial_id"]  # finished: kept, not rerun
    assert fresh_reports(after.loc[1, "path"]) == [5]  # continued from its checkpoint after task 4
    assert read_reports(Path(after.loc[1, "path"]))[-1]["accuracy_matrix"] == matrix
    assert fresh_reports(after.loc[2, "path"]) == [1, 2, 3, 4, 5]
    assert len(list(grid.glob(".abandoned-1/experiment_state-*.json"))) == 1


@pytest.mark.parametrize("stack", ["off", 2])
def test_an_unreadable_optuna_state_keeps_the_budget_and_what_finished(tmp_path: Path, ray_local, stack) -> None:
    # stack 2: the batched search (a stack of 2 and one alone); off: one configuration per trial
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": {"loguniform": [0.1, 10.0]}}}}, max_concurrent=1,
                     search={"sampler": "tpe", "seed": 2, "num_samples": 3}, stack=stack)
    outcome = run_sweep(study, QUIET)
    phase = Path(outcome.root) / "optuna"
    before = load_trials(outcome.root)
    for state in [*phase.glob("experiment_state-*.json"), *phase.glob("searcher-state-*.pkl")]:
        state.write_bytes(b"")
    def folder(row) -> Path:  # a stacked row's path is its member folder inside the trial's
        return Path(row["path"]).parent if row.get("stack_members", 1) > 1 else Path(row["path"])

    lost = folder(before.sort_values("trial_id").iloc[-1])  # the last trial's folder is lost
    import shutil

    shutil.rmtree(lost)
    run_sweep(study, dataclasses.replace(QUIET, resume=True))
    after = load_trials(outcome.root)
    assert len(after) == 3 and set(after["status"]) == {"finished"}  # the budget, not more
    kept = {row["trial_id"] for _, row in before.iterrows() if folder(row) != lost}
    assert kept and kept <= set(after["trial_id"])
    assert len(list(phase.glob(".abandoned-1/searcher-state-*.pkl"))) == 1
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # the new study holds each configuration once: the kept ones told from their folders, then the rerun
    journal = JournalStorage(JournalFileBackend(str(phase / "optuna.journal")))
    told = optuna.load_study(study_name="optuna-spp", storage=journal).trials
    assert [t.state.name for t in told] == ["COMPLETE"] * 3
    assert sorted(round(t.value, 9) for t in told) == sorted(round(v, 9) for v in after["score"])


def test_a_trial_started_after_the_last_snapshot_continues_from_its_checkpoints(tmp_path: Path, ray_local) -> None:
    """Grid phases snapshot Ray Tune's state every few seconds (runner.py): a driver killed
    between a trial's start and the next snapshot restores an experiment that does not know
    that trial. --resume sets its folder aside and continues it from its newest checkpoint."""
    import shutil

    # one configuration per trial: this test cuts trial folders one configuration at a time
    # (the stacked version: test_a_killed_stacked_trial_and_an_unreadable_state_resume)
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [0.5, 1.0, 2.0]}}}, stack="off")
    outcome = run_sweep(study, QUIET)
    grid = Path(outcome.root) / "grid"
    before = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    stray = Path(before.loc[1, "path"])  # lam 1.0: unknown to the snapshot, killed after task 4
    matrix = read_reports(stray)[-1]["accuracy_matrix"]
    (stray / "result.json").write_text("\n".join((stray / "result.json").read_text().splitlines()[:4]) + "\n")
    shutil.rmtree(sorted(stray.glob("checkpoint_*"))[-1])
    forget_staged_copy(ray_local, stray)
    for path in grid.glob("experiment_state-*.json"):
        state = json.loads(path.read_text())
        state["trial_data"] = [t for t in state["trial_data"]
                               if json.loads(t[0])["trial_id"] != before.loc[1, "trial_id"]]
        path.write_text(json.dumps(state))

    # a killed driver leaves its state unsigned: without --trust-state it is set aside unread
    # (test_hostile_files); with it, Ray restores it, as here
    run_sweep(study, dataclasses.replace(QUIET, resume=True, trust_state=True))
    after = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    assert list(after["lam"]) == [0.5, 1.0, 2.0] and set(after["status"]) == {"finished"}
    assert list(after["trial_id"][[0, 2]]) == list(before["trial_id"][[0, 2]])  # kept, not rerun
    assert after.loc[1, "phase"] == "grid-rest" and fresh_reports(after.loc[1, "path"]) == [5]
    assert read_reports(Path(after.loc[1, "path"]))[-1]["accuracy_matrix"] == matrix
    assert (grid / ".abandoned-1" / stray.name / "params.json").exists()


def forget_staged_copy(ray_local, trial: Path) -> None:
    """A resumed driver is a new Ray session without the killed one's staged copy of a trial's
    logs; the tests share one session, so drop that copy (else Ray syncs it back over a cut)."""
    import shutil

    session = Path(ray_local._private.worker._global_node.get_session_dir_path())
    for staged in session.glob(f"artifacts/*/grid/driver_artifacts/{trial.name}"):
        shutil.rmtree(staged)


def test_a_snapshot_naming_a_deleted_checkpoint_still_restores_the_trial(tmp_path: Path, ray_local) -> None:
    """Grid snapshots can be older than a trial's two kept checkpoints: the one a snapshot names
    may be gone. Ray would refuse to restore that trial; it continues from its newest checkpoint."""
    import shutil

    # one configuration per trial: this test cuts trial folders one configuration at a time
    # (the stacked version: test_a_killed_stacked_trial_and_an_unreadable_state_resume)
    study = study_of(tmp_path, methods={"spp": {"space": {"lam": [0.5, 1.0, 2.0]}}}, stack="off")
    outcome = run_sweep(study, QUIET)
    grid = Path(outcome.root) / "grid"
    before = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    cut = Path(before.loc[1, "path"])  # lam 1.0: the snapshot says running, at its final checkpoint
    matrix = read_reports(cut)[-1]["accuracy_matrix"]
    (cut / "result.json").write_text("\n".join((cut / "result.json").read_text().splitlines()[:4]) + "\n")
    named = sorted(cut.glob("checkpoint_*"))[-1]
    shutil.rmtree(named)  # deleted by Ray after a snapshot that still names it
    forget_staged_copy(ray_local, cut)
    for path in grid.glob("experiment_state-*.json"):
        state = json.loads(path.read_text())
        for entry in state["trial_data"]:
            trial_state = json.loads(entry[0])
            if trial_state["trial_id"] == before.loc[1, "trial_id"]:
                trial_state["status"] = "RUNNING"
                entry[0] = json.dumps(trial_state)
        path.write_text(json.dumps(state))

    run_sweep(study, dataclasses.replace(QUIET, resume=True, trust_state=True))  # as a killed driver's: trusted
    after = load_trials(outcome.root).sort_values("lam").reset_index(drop=True)
    assert set(after["status"]) == {"finished"}, after[["status", "error"]].to_string()
    assert list(after["trial_id"]) == list(before["trial_id"])  # restored in place, nothing rerun
    assert fresh_reports(after.loc[1, "path"]) == [1, 2, 3, 4, 5]  # 4 before the cut, then task 5 only
    assert read_reports(Path(after.loc[1, "path"]))[-1]["accuracy_matrix"] == matrix


def test_only_the_searcher_state_sync_race_is_silenced(caplog) -> None:
    """Ray logs a traceback when its syncer copies the driver's folder while the searcher renames
    its temporary state file; that one is harmless and hidden, any other sync failure shows."""
    import logging

    from spp_sweep.sweep.runner import _library_output

    logger = logging.getLogger("ray.tune.execution.experiment_state")
    with _library_output(quiet=False), caplog.at_level(logging.ERROR, logger=logger.name):
        for name in (".e1-tmp-searcher-state-2026.pkl", "experiment_state-2026.json"):
            try:
                raise FileNotFoundError(f"Failed to open local file '/tmp/ray/x/{name}'")
            except FileNotFoundError:
                logger.error("Saving experiment state to storage failed with exception: ", exc_info=True)
    shown = [str(r.exc_info[1]) for r in caplog.records]
    assert len(shown) == 1 and "experiment_state-2026.json" in shown[0]


def test_a_checkpoint_that_loads_but_does_not_fit_falls_back_to_the_older_one(tmp_path: Path, capsys) -> None:
    """A stack's newest state.pt replaced by tensors under other keys: skipped like a cut one (not
    a KeyError ending the stack), the older checkpoint continues; with none left, the stack is
    exactly as it was before the attempt (nothing of the misfit applied)."""
    from spp_sweep.stacked import StackedExperiment
    from spp_sweep.sweep.trainable import STATE_FILE, newest_first, resume_from
    from tests.unit.test_stacked import member_configs

    configs = member_configs("ewc", first_tasks=2)
    saved = {}

    def keep(task: int, stack: StackedExperiment) -> None:
        if task == 0:
            saved["state"] = copy.deepcopy(stack.state_dict())

    StackedExperiment(configs).run(on_task_end=keep)
    older = tmp_path / "checkpoint_000000"
    older.mkdir()
    torch.save(saved["state"], older / STATE_FILE)
    newer = tmp_path / "checkpoint_000001"
    newer.mkdir()
    torch.save({"weights": torch.zeros(3), "next_task": 1}, newer / STATE_FILE)  # loads, does not fit
    resumed = StackedExperiment(configs)
    assert resume_from(newest_first(tmp_path), resumed) is None
    assert resumed.next_task == 1 and "checkpoint_000001 is unusable (KeyError" in capsys.readouterr().err
    model_only = {key: value for key, value in saved["state"].items() if key not in ("method", "next_task")}
    torch.save(model_only, older / STATE_FILE)  # the model fits and loads, then the method's state is missing
    fresh = StackedExperiment(configs)
    before = copy.deepcopy(fresh.state_dict())
    assert resume_from(newest_first(tmp_path), fresh) is None and fresh.next_task == 0
    assert _same(before, fresh.state_dict())


def _same(a, b) -> bool:
    """Nested states equal to the last bit (tensors, lists, dicts, plain values)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b

"""TensorBoard, MLflow and W&B see every configuration as a run of its own, stacked or not, with
its searched values as parameters, one step per task and the final ACC/BWT/FWT (test and
validation); checked offline by reading the runs back: TensorBoard's event reader, MLflow's
client on a local sqlite store, W&B's offline files. No run is empty, and every logged final
value equals the one in the sweep's own result files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.load import load_trials
from tests.conftest import REPO
from tests.tracker_files import tensorboard_run, wandb_run

CONFIGURATIONS = {(1.0, 0), (1.0, 1), (4.0, 0), (4.0, 1)}  # (λ, seed)
FINAL = ("acc", "bwt", "fwt", "val_acc", "val_bwt", "val_fwt")


@dataclass(frozen=True)
class TrackedSweep:
    """One sweep logged to all three trackers, read back by the tests below."""

    folder: Path  # where the study, the sweep, the MLflow store and W&B's offline files are
    stack: str
    stdout: str
    truth: dict[tuple[float, int], Any]  # (λ, seed) -> its row of the sweep's own trials table


@pytest.fixture(scope="module", params=["auto", "off"])
def tracked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TrackedSweep:
    """The sweep, stacked (``auto``) and not (``off``), each run once for the module's tests."""
    stack, tmp_path = request.param, tmp_path_factory.mktemp(f"tracked-{request.param}")
    study = {"name": "tracked", "benchmark": "split_digits", "fixed": {"epochs": 1, "validation": 0.2},
             "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}}, "seeds": 2, "resources": {"cpu": 1},
             "storage": str(tmp_path / "sweeps")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(tmp_path / "study.yaml"), "--no-report",
                           "--stack", stack, "--tensorboard", "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}",
                           "--wandb", "spp-sweep-test"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "logging failed" not in done.stderr
    trials = load_trials(tmp_path / "sweeps" / "tracked")
    return TrackedSweep(tmp_path, stack, done.stdout, {(row.lam, row.seed): row for row in trials.itertuples()})


def test_the_tracked_sweep_is_one_configuration_per_lambda_and_seed_stacked_or_not(tracked: TrackedSweep) -> None:
    trials = load_trials(tracked.folder / "sweeps" / "tracked")
    assert ("stack_members" in trials and (trials["stack_members"].fillna(1) > 1).any()) == (tracked.stack == "auto")
    assert set(tracked.truth) == CONFIGURATIONS


def test_tensorboard_has_a_run_per_configuration_a_step_per_task_and_the_final_values(tracked: TrackedSweep) -> None:
    root = tracked.folder / "sweeps" / "tracked"
    assert f"tensorboard --logdir {root / 'tensorboard'}" in tracked.stdout
    tensorboard = [tensorboard_run(folder) for folder in sorted((root / "tensorboard" / "grid").iterdir())]
    assert {(run["hparams"]["lam"], int(run["hparams"]["seed"])) for run in tensorboard} == CONFIGURATIONS
    for run in tensorboard:
        assert [step for step, _ in run["scalars"]["running_acc"]] == [1, 2, 3, 4, 5]
        assert [step for step, _ in run["scalars"]["val_running_acc"]] == [1, 2, 3, 4, 5]
        expected = tracked.truth[(run["hparams"]["lam"], int(run["hparams"]["seed"]))]
        for name in FINAL:  # float32 in event files
            assert run["scalars"][name][0] == (5, pytest.approx(getattr(expected, name), abs=1e-6))


def test_mlflow_has_a_finished_run_per_configuration_with_its_values_as_parameters(tracked: TrackedSweep) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracked.folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert {(float(r.data.params["lam"]), int(r.data.params["seed"])) for r in runs} == CONFIGURATIONS
    assert len(runs) == 4 and len({r.info.run_name for r in runs}) == 4
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["phase"] == "grid"
        assert run.data.params["method"] == "spp" and run.data.params["penalty_step"] == "explicit"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "running_acc")] == [1, 2, 3, 4, 5]
        expected = tracked.truth[(float(run.data.params["lam"]), int(run.data.params["seed"]))]
        assert all(run.data.metrics[name] == pytest.approx(getattr(expected, name)) for name in FINAL)
        assert "lam" not in run.data.metrics and "accuracy_matrix" not in run.data.metrics


def test_wandb_has_an_offline_run_per_configuration_in_the_phases_group(tracked: TrackedSweep) -> None:
    files = sorted((tracked.folder / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    offline = [wandb_run(path) for path in files]
    assert {(run["config"]["lam"], run["config"]["seed"]) for run in offline} == CONFIGURATIONS
    for run in offline:
        assert run["group"] == "tracked/grid" and sorted(run["history"]) == [1, 2, 3, 4, 5]
        assert run["summary"]["status"] == "finished"
        expected = tracked.truth[(run["config"]["lam"], run["config"]["seed"])]
        assert all(run["history"][5][name] == pytest.approx(getattr(expected, name)) for name in FINAL)


def test_an_unusable_tracker_is_one_line_before_any_trial(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", "studies/lambda_robustness.yaml",
                           "--storage", str(tmp_path), "--mlflow", "nosuchscheme://x"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--mlflow nosuchscheme://x" in done.stderr
    assert not any(tmp_path.iterdir())


def test_an_interrupted_and_resumed_sweep_continues_each_configurations_run_with_every_task_once(
        tmp_path: Path) -> None:
    """Ctrl+C after some tasks, then --resume: the same runs continue (MLflow by tag, TensorBoard by
    folder), each with steps 1..5 once and its final values, wherever the interruption fell."""
    study = {"name": "tracked", "benchmark": "split_digits", "fixed": {"epochs": 200},
             "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}}, "seeds": 2, "resources": {"cpu": 1},
             "storage": str(tmp_path / "sweeps")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "spp_sweep", "sweep", str(tmp_path / "study.yaml"), "--no-report",
               "--stack", "off", "--tensorboard", "--mlflow", store]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((tmp_path / "sweeps").glob("tracked/grid/*/checkpoint_000001")):
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode != 0 and "--resume" in err  # it was interrupted, not finished
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    truth = {(row.lam, row.seed): row.acc for row in load_trials(tmp_path / "sweeps" / "tracked").itertuples()}

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert {(float(r.data.params["lam"]), int(r.data.params["seed"])) for r in runs} == CONFIGURATIONS
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "running_acc")] == [1, 2, 3, 4, 5]
        assert run.data.metrics["acc"] == pytest.approx(truth[(float(run.data.params["lam"]),
                                                                int(run.data.params["seed"]))])
    folders = sorted((tmp_path / "sweeps" / "tracked" / "tensorboard" / "grid").iterdir())
    assert len(folders) == 4
    for folder in folders:
        assert [step for step, _ in tensorboard_run(folder)["scalars"]["running_acc"]] == [1, 2, 3, 4, 5]

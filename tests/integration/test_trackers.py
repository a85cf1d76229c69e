"""TensorBoard, MLflow and W&B see every trial with one step per task, checked offline:
TensorBoard event files, MLflow's local (sqlite) store, W&B's offline mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO


def test_a_sweep_logs_to_tensorboard_mlflow_and_wandb_offline(tmp_path: Path) -> None:
    study = {"name": "tracked", "benchmark": "split_digits", "fixed": {"epochs": 1},
             "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}}, "resources": {"cpu": 1},
             "storage": str(tmp_path / "sweeps")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(tmp_path / "study.yaml"), "--no-report",
                           "--tensorboard", "--mlflow", store, "--wandb", "spp-sweep-test"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    root = tmp_path / "sweeps" / "tracked"
    assert f"tensorboard --logdir {root}" in done.stdout
    trials = sorted(p.parent for p in root.glob("grid/*/params.json"))
    assert len(trials) == 2 and all(list(t.glob("events.out.tfevents.*")) for t in trials)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert sorted(r.data.params["trial/params/lam"] for r in runs) == ["1.0", "4.0"]
    for run in runs:  # one point per task, the task index as step
        history = client.get_metric_history(run.info.run_id, "running_acc")
        assert [m.step for m in history] == [1, 2, 3, 4, 5]
        assert "acc" in run.data.metrics and "accuracy_matrix" not in run.data.metrics
    offline = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(list(run.glob("*.wandb")) for run in offline)


def test_an_unusable_tracker_is_one_line_before_any_trial(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", "studies/lambda_robustness.yaml",
                           "--storage", str(tmp_path), "--mlflow", "nosuchscheme://x"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--mlflow nosuchscheme://x" in done.stderr
    assert not any(tmp_path.iterdir())

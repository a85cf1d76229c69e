"""``spp-sweep`` as a user runs it: outputs, listings, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest

from spp_sweep import trial_files
from spp_sweep.cli import main

FAST = ["--epochs", "5", "--quiet"]


def test_run_writes_result_json_and_csv(tmp_path, capsys):
    out = tmp_path / "spp"
    assert main(["run", "--method", "spp", "--benchmark", "split_digits", "--lam", "2", "--out", str(out), *FAST]) == 0
    result = json.loads((out / "result.json").read_text())
    assert {"config", "accuracy_matrix", "metrics", "seconds"} <= set(result)
    assert {"acc", "bwt", "fwt", "smt"} <= set(result["metrics"])
    assert len(result["accuracy_matrix"]) == 5
    assert result["config"]["method_options"]["lam"] == 2.0
    table = (out / "accuracy_matrix.csv").read_text().splitlines()
    assert table[0].startswith("after_task,") and [row.split(",")[0] for row in table[1:]] == ["1", "2", "3", "4", "5"]
    assert "result.json" in capsys.readouterr().out


def test_run_saves_arrays_in_the_trial_folder_format(tmp_path):
    """`run` writes importances and parameters as a sweep trial does (trial_files: .npz, no pickles)."""
    out = tmp_path / "arrays"
    assert main(["run", "--method", "ewc", "--epochs", "1", "--max-train-per-task", "40", "--save-importances",
                 "--save-parameters", "--quiet", "--out", str(out)]) == 0
    importances = trial_files.read_arrays(out / trial_files.IMPORTANCES)
    parameters = trial_files.read_arrays(out / trial_files.PARAMETERS)
    assert {f"task{t}/trunk.1.weight" for t in range(5)} <= set(importances)
    assert {f"task{t}/trunk.1.weight" for t in range(5)} | {f"importance{t}/trunk.1.weight" for t in range(5)} \
        <= set(parameters)
    assert parameters["task4/trunk.1.weight"].shape == (64, 64)
    assert not list(out.glob("*.pt"))


def test_run_output_flag_sets_the_head_layout(tmp_path):
    from spp_sweep.cli import build_parser
    from spp_sweep.config import OUTPUTS

    assert main(["run", "--method", "finetune", "--output", "shared", "--epochs", "1", "--max-train-per-task", "60",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["config"]["output"] == "shared"
    flag = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                if a.dest == "output")
    assert tuple(flag.choices) == OUTPUTS  # the CLI's light copy of the list stays in step with the engine's


def test_run_prints_matrix_and_metrics(tmp_path, capsys):
    assert main(["run", "--method", "finetune", "--epochs", "2", "--max-train-per-task", "80",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "after T5" in printed and "ACC" in printed and "BWT" in printed and "FWT(standard)" in printed


@pytest.mark.parametrize("method", ["spp", "ewc", "si", "mas", "lwf", "sgd", "sgd_frozen", "finetune", "joint"])
def test_every_method_runs(tmp_path, method):
    assert main(["run", "--method", method, "--out", str(tmp_path), *FAST]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "finished"
    assert result["accuracy_matrix"][-1][-1] > 0.8  # every method learns the task it just trained on


def test_joint_reference_gives_paper_fwt(tmp_path):
    assert main(["run", "--method", "joint", "--out", str(tmp_path / "joint"), *FAST]) == 0
    assert main(["run", "--method", "finetune", "--out", str(tmp_path / "ft"), "--joint-reference",
                 str(tmp_path / "joint" / "result.json"), *FAST]) == 0
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert result["metrics"]["fwt_paper"] is not None


def test_listings(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["spp", "ewc", "si", "mas", "lwf", "sgd", "sgd_frozen", "finetune",
                                                   "joint", "er", "agem", "derpp"]
    assert main(["benchmarks"]) == 0
    assert "split_digits" in capsys.readouterr().out


def _cli(*args, tmp_path):
    env = {**os.environ, "SPP_DATA_ROOT": ""}
    return subprocess.run([sys.executable, "-m", "spp_sweep", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--method", "nope"], "unknown method 'nope'; choose one of: spp"),
        (["run", "--benchmark", "nope"], "unknown benchmark 'nope'; choose one of: split_digits"),
        (["run", "--lam", "-1"], "lam=-1.0 must be >= 0"),
        (["run", "--lr", "-0.1"], "lr=-0.1 is invalid"),
        (["run", "--method", "finetune", "--lam", "1"], "has no option 'lam'"),
        (["run", "-o", "importance=exact"], "choose one of: batch, per_sample"),
        (["run", "--benchmark", "split_mnist"], "--data-root"),
        (["run", "--benchmark", "split_mnist", "--data-root", "nowhere"], "MNIST not found"),
        (["run", "--device", "cuda"], "no CUDA GPU; use --device cpu"),
        (["run", "--epochs", "many"], "invalid int value"),
        (["run", "--benchmark-option", "data_seed=abc"], "data_seed='abc' is invalid; it must be a whole number"),
        (["run", "--lam", "inf"], "lam=inf must be a finite number"),
        (["run", "--lr", "inf"], "lr=inf is invalid"),
        (["run", "--lr", "nan"], "lr=nan is invalid"),
        (["run", "--hidden", "0"], "widths >= 1"),
        (["run", "--model-option", "dropout=1.5"], "dropout=1.5 is invalid"),
        (["run", "-o", "penalty_step=implicit", "--momentum", "0.9"], "momentum"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, expected):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU, so --device cuda is valid")
    completed = _cli(*args, "--out", "out", tmp_path=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert expected in completed.stderr
    assert not (tmp_path / "out").exists()


def test_help_on_every_command(tmp_path):
    for command in (["--help"], ["run", "--help"], ["methods", "--help"], ["benchmarks", "--help"]):
        completed = _cli(*command, tmp_path=tmp_path)
        assert completed.returncode == 0 and "usage" in completed.stdout


def test_split_mnist_short_run(tmp_path, data_root):
    out = tmp_path / "mnist"
    code = main(["run", "--method", "spp", "--benchmark", "split_mnist", "--data-root", str(data_root),
                 "--epochs", "2", "--max-train-per-task", "2000", "--batch-size", "64", "--hidden", "64,32",
                 "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["metrics"]["acc"] > 0.85  # 2 epochs on 2000 samples per task already separate digit pairs


def test_an_unwritable_or_used_out_folder_is_refused_before_training(tmp_path):
    for out, expected in [("/proc/spp-sweep-test", "cannot be written"), ("/sys/spp-sweep-test", "cannot be written")]:
        completed = _cli("run", "--out", out, tmp_path=tmp_path)
        assert completed.returncode == 2 and expected in completed.stderr, completed.stderr
        assert completed.stderr.count("\n") == 1 and "after T1" not in completed.stdout  # nothing trained
    used = tmp_path / "used"
    used.mkdir()
    (used / "result.json").write_text("{}")
    completed = _cli("run", "--out", "used", tmp_path=tmp_path)
    assert completed.returncode == 2 and "--overwrite" in completed.stderr
    assert (used / "result.json").read_text() == "{}"
    completed = _cli("run", "--out", "used", "--overwrite", "--epochs", "1", "--quiet", tmp_path=tmp_path)
    assert completed.returncode == 0 and json.loads((used / "result.json").read_text())["status"] == "finished"


def test_run_prints_its_resolved_settings_and_a_line_per_task_in_a_log(tmp_path):
    completed = _cli("run", "--method", "ewc", "--epochs", "2", "--out", "out", tmp_path=tmp_path)
    assert completed.returncode == 0
    first = completed.stdout.splitlines()[:4]
    assert first[0].startswith("method     ewc (lam=100.0") and "penalty_step=explicit" in first[0]
    assert first[1].startswith("benchmark  split_digits (data_seed=0")
    assert first[2] == "model      mlp (hidden=(64, 32), dropout=0.0, init=normal, dropout_layers=all)"
    assert "epochs/task 2, lr 0.1" in first[3]
    # stderr is a pipe here, not a terminal: one line per task instead of a progress bar
    lines = [line for line in completed.stderr.splitlines() if " done in " in line]
    assert [line.split(":")[1].split()[1] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    loss = float(lines[0].split("mean loss of its last epoch ")[1].split(",")[0])
    assert 0 < loss < 1.5  # a mean over batches of a two-class cross-entropy, not their sum
    config = json.loads((tmp_path / "out" / "result.json").read_text())["config"]
    assert config["model_options"] == {"hidden": [64, 32], "dropout": 0.0, "init": "normal", "dropout_layers": "all"}
    assert config["benchmark_options"]["test_fraction"] == 0.3  # every setting in force, defaults included


def test_a_diverged_run_says_so_in_every_mode_and_counts_tasks_from_one(tmp_path):
    completed = _cli("run", "--lr", "1e6", "--lr-decay", "1", "--epochs", "2", "--quiet", "--out", "out",
                     tmp_path=tmp_path)
    assert completed.returncode == 3
    assert "diverged at task 1" in completed.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "diverged" and result["diverged_at_task"] == 1


def test_files_follow_the_umask(tmp_path):
    previous = os.umask(0o002)
    try:
        assert main(["run", "--epochs", "1", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "out" / "result.json").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "out" / "accuracy_matrix.csv").stat().st_mode & 0o777 == 0o664


def test_joint_has_no_standard_fwt_and_version_is_printed(tmp_path):
    assert main(["run", "--method", "joint", "--epochs", "1", "--out", str(tmp_path / "j"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "j" / "result.json").read_text())["metrics"]
    assert metrics["fwt"] is None and metrics["acc"] is not None
    completed = _cli("--version", tmp_path=tmp_path)
    assert completed.returncode == 0 and completed.stdout.startswith("spp-sweep 0.")


def test_many_tasks_say_why_the_run_is_slow(tmp_path):
    completed = _cli("run", "--benchmark", "permuted_digits", "--n-tasks", "21", "--epochs", "1",
                     "--max-train-per-task", "20", "--method", "finetune", "--out", "out", tmp_path=tmp_path)
    assert completed.returncode == 0 and "21 tasks" in completed.stderr and "square" in completed.stderr

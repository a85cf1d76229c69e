"""The sequential loop: determinism, checkpoint round-trip, divergence, frozen layers, heads."""

import math

import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import ConfigError
from tests.conftest import resumed_after_second_task

FAST = dict(benchmark="split_digits", epochs=5)


def test_same_seed_same_matrix():
    a = Experiment(RunConfig(method="spp", **FAST)).run()
    b = Experiment(RunConfig(method="spp", **FAST)).run()
    assert a.accuracy_matrix == b.accuracy_matrix
    assert len(a.accuracy_matrix) == 5 and all(len(r) == 5 for r in a.accuracy_matrix)
    assert a.status == "finished"


@pytest.mark.parametrize("method", ["spp", "ewc", "si", "mas", "lwf", "sgd_frozen", "sgd"])
def test_checkpoint_round_trip_continues_identically(method):
    config = RunConfig(method=method, model_options={"dropout": 0.3}, **FAST)  # dropout: RNG state matters
    uninterrupted = Experiment(config).run()
    result = resumed_after_second_task(config)
    assert result.accuracy_matrix == uninterrupted.accuracy_matrix
    assert result.metrics == uninterrupted.metrics


def test_callback_reports_every_task():
    reports = []
    Experiment(RunConfig(method="finetune", **FAST)).run(on_task_end=lambda r, e: reports.append(r))
    assert [r.task for r in reports] == [0, 1, 2, 3, 4]
    assert reports[2].accuracy_matrix == [r.accuracy_row for r in reports[:3]]
    assert reports[0].running_acc == reports[0].accuracy_row[0]


def test_divergence_is_recorded_not_raised():
    result = Experiment(RunConfig(method="spp", lr=1e6, lr_decay=1.0, **FAST)).run()
    assert result.status == "diverged"
    assert result.diverged_task is not None
    assert all(math.isnan(v) for v in result.metrics.values())


def test_frozen_sgd_keeps_the_trunk_after_the_first_task():
    snapshots = []
    experiment = Experiment(RunConfig(method="sgd_frozen", **FAST))
    experiment.run(on_task_end=lambda r, e: snapshots.append({k: v.clone() for k, v in e.model.state_dict().items()}))
    trunk = [k for k in snapshots[0] if k.startswith("trunk.")]
    assert trunk
    for later in snapshots[1:]:
        for key in trunk:
            assert torch.equal(snapshots[0][key], later[key])
    assert not torch.equal(snapshots[0]["heads.1.weight"], snapshots[1]["heads.1.weight"])


def test_sgd_shares_one_head_of_the_tasks_size_by_default_and_class_incremental_on_request():
    """The authors' split-MNIST SGD: one 2-way output layer reused by every task, local labels
    (domain-incremental). class_incremental: one 10-way layer, global labels. Any method can
    take either layout; fine-tuning keeps a head per task by default."""
    shared = Experiment(RunConfig(method="sgd", **FAST))
    assert shared.config.output == "shared" and len(shared.model.heads) == 1
    assert shared.model.heads[0].out_features == 2 and set(shared.view(3).y.tolist()) == {0, 1}
    assert [shared.head_of(t) for t in range(5)] == [0] * 5
    result = shared.run()
    assert result.status == "finished" and result.metrics["acc"] > 0.6  # far above class-incremental's ~0.19
    incremental = Experiment(RunConfig(method="sgd", output="class_incremental", **FAST))
    assert len(incremental.model.heads) == 1 and incremental.model.heads[0].out_features == 10
    assert set(incremental.view(3).y.tolist()) == {6, 7}
    finetune = Experiment(RunConfig(method="finetune", **FAST))
    assert finetune.config.output == "per_task" and len(finetune.model.heads) == 5
    for method in ("finetune", "spp", "lwf", "sgd_frozen"):  # every method runs with a shared head
        run = Experiment(RunConfig(method=method, output="shared", **FAST)).run()
        assert run.status == "finished", method
    with pytest.raises(ConfigError, match="output='two'"):
        RunConfig(method="sgd", output="two").resolved()


def test_joint_trains_once_on_all_tasks():
    result = Experiment(RunConfig(method="joint", **FAST)).run()
    assert all(row == result.accuracy_matrix[0] for row in result.accuracy_matrix)
    assert result.metrics["fwt_paper"] == 0.0  # joint is its own reference m_i
    assert min(result.accuracy_matrix[-1]) > 0.8


def test_importances_saved_per_task():
    result = Experiment(RunConfig(method="spp", save_importances=True, **FAST)).run()
    assert len(result.importances) == 5
    assert set(result.importances[0]) == {"trunk.1.weight", "trunk.1.bias", "trunk.3.weight", "trunk.3.bias"}
    assert all((v >= 0).all() for v in result.importances[0].values())


def test_spp_forgets_less_than_finetuning():
    """Measured: over seeds 0-2, BWT -0.030 +- 0.007 (spp, lam 4) vs -0.062 +- 0.012 (finetune)."""
    spp = Experiment(RunConfig(method="spp", benchmark="split_digits")).run()
    finetune = Experiment(RunConfig(method="finetune", benchmark="split_digits")).run()
    assert spp.config["method_options"]["lam"] == 4.0
    assert spp.metrics["bwt"] > finetune.metrics["bwt"] + 0.015


@pytest.mark.parametrize("method", ["spp", "ewc", "mas", "si"])
def test_a_penalty_switched_off_measures_nothing_and_changes_no_number(method, monkeypatch):
    """λ = 0: no importance pass (issue 14), and the run is fine-tuning to the last digit."""
    finetune = Experiment(RunConfig(method="finetune", **FAST)).run()
    measured = Experiment(RunConfig(method=method, method_options={"lam": 0.0}, save_importances=True, **FAST))
    method_cls = type(measured.method)
    calls = []
    original = method_cls.task_importance
    monkeypatch.setattr(method_cls, "task_importance",
                        lambda self, view: calls.append(view.index) or original(self, view))
    assert measured.run().accuracy_matrix == finetune.accuracy_matrix
    assert len(calls) == 5  # saving importances still measures them
    calls.clear()
    skipped = Experiment(RunConfig(method=method, method_options={"lam": 0.0}, **FAST)).run()
    assert calls == [] and skipped.accuracy_matrix == finetune.accuracy_matrix

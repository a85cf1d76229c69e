"""Baselines as the paper and the authors define them: finite blow-ups recorded as diverged,
LwF's two sides of the distillation from the same network mode."""

from __future__ import annotations

import math

import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.methods.base import Step


def test_a_finite_blow_up_is_recorded_as_diverged_with_its_reason() -> None:
    """lr 50 leaves a dead network (ACC at chance, every loss finite): diverged at task 1, with
    the untrained and final loss named; lr 1e-6 barely learns and stays finished, and so does a
    CNN whose eval-mode batch-norm statistics lag after one short epoch (tests/unit/benchmarks/test_vision.py)."""
    blown = Experiment(RunConfig(method="finetune", lr=50.0, epochs=2)).run()
    assert blown.status == "diverged" and blown.diverged_task == 0
    assert blown.diverged_reason.startswith("finite blow-up") and math.isnan(blown.metrics["acc"])
    text = blown.diverged_reason.split("from ")[1]
    before, after = float(text.split(" (first batch)")[0]), float(text.split(" to ")[1].split(" (last epoch)")[0])
    # by hand: the untrained two-class loss is about log 2, and the dead network's is above it by
    # more than the 25% the rule allows and above 0.9 log 2 (no better than guessing)
    assert abs(before - math.log(2)) < 0.1 and after > 1.25 * before and after >= 0.9 * math.log(2)
    assert "log 2 = 0.693" in blown.diverged_reason
    slow = Experiment(RunConfig(method="finetune", lr=1e-6, epochs=2)).run()
    assert slow.status == "finished" and slow.metrics["acc"] < 0.7  # learned nothing, but did not diverge
    nan = Experiment(RunConfig(method="spp", lr=0.1, epochs=3, method_options={"lam": 1e4})).run()
    assert nan.status == "diverged" and nan.diverged_reason == "training loss not finite (NaN/inf)"


def test_a_loss_that_explodes_then_settles_at_chance_is_a_blow_up_even_on_a_short_task() -> None:
    """The rule by hand on the numbers of a real case (main job, SPP λ=12 explicit, seed 1, task 5:
    first batch 0.708, peak 6,470, last epoch 0.718 on a 2-way head, 7 batches per epoch): the
    loss ended where it started, so only the peak reveals the dead network. A slow learner (no
    peak) and a run that spiked but learned (ends below chance) stay finished."""
    experiment = Experiment(RunConfig(method="finetune", epochs=1))
    reason = experiment._blown_up(0.708, 0.718, 6470.0, task=4, rise_judged=False)
    assert reason is not None and "peaked at 6470" in reason and "log 2 = 0.693" in reason
    assert experiment._blown_up(0.708, 0.70, 0.75, task=4, rise_judged=False) is None  # tiny lr: no peak
    assert experiment._blown_up(0.708, 0.05, 60.0, task=4) is None  # spiked, then learned
    assert experiment._blown_up(0.5, 0.9, 0.95, task=4, rise_judged=False) is None  # a rise needs 8 batches
    assert experiment._blown_up(0.5, 0.9, 0.95, task=4) is not None
    # a dead network predicts at chance too; a head that still classifies its batches (94% here) while
    # its loss rose above log 2 is noisy, not dead (split MNIST, SPP implicit λ=1e4, task 5: 0.974 -> 1.274)
    assert experiment._blown_up(0.974, 1.274, 1.4, task=4, accuracy=0.94) is None
    assert experiment._blown_up(0.974, 1.274, 1.4, task=4, accuracy=0.55) is not None  # within 0.1 of chance
    assert experiment._blown_up(0.708, 0.718, 6470.0, task=4, rise_judged=False, accuracy=0.5) is not None
    # the whole run, with the 20% validation split that leaves 7 batches per epoch: lr 50 still caught
    short = Experiment(RunConfig(method="finetune", lr=50.0, epochs=2, validation=0.2)).run()
    assert short.status == "diverged" and short.diverged_reason.startswith("finite blow-up")


def lwf_after_first_task(mode: str) -> tuple[Experiment, Step]:
    config = RunConfig(method="lwf", epochs=1, model_options={"dropout": 0.5}, method_options={"mode": mode})
    experiment = Experiment(config)
    assert experiment.train_task(0)
    experiment.method.before_task(experiment.view(1))
    experiment.method.set_train_mode(1)
    x = experiment.benchmark.tasks[1].x_train[:64]
    features = experiment.model.trunk(x)
    return experiment, Step(1, 1, x, experiment._targets[1][0][:64], features, experiment.model.heads[1](features))


def test_lwf_distils_like_for_like_so_nothing_changed_means_no_gradient() -> None:
    """Right after the copy, old and new networks are the same function. With both sides in
    eval mode (the default) the distillation gradient is therefore exactly zero: d/dz of
    CE(softmax(z_old/T), softmax(z/T)) = (softmax(z/T) - softmax(z_old/T)) / T = 0 by hand.
    In train mode dropout draws differ between the two sides, so a gradient appears; the same
    happens with the old mixed modes (new in train, old in eval), which this option removes."""
    experiment, step = lwf_after_first_task("eval")
    penalty = experiment.method.penalty(step)
    grads = torch.autograd.grad(penalty, [p for p in experiment.model.parameters()], allow_unused=True)
    assert max(float(g.abs().max()) for g in grads if g is not None) < 1e-7
    assert experiment.model.training and all(m.training for m in experiment.model.modules())  # modes restored
    temperature = experiment.method.hparams["temperature"]
    with torch.no_grad():  # by hand: the loss is the entropy of the softened old outputs
        experiment.model.eval()
        p = torch.softmax(experiment.model.heads[0](experiment.model.trunk(step.x)) / temperature, -1)
        experiment.model.train()
    assert penalty.item() == pytest.approx((-(p * p.log()).sum(-1).mean()).item(), rel=1e-5)

    experiment, step = lwf_after_first_task("train")
    penalty = experiment.method.penalty(step)
    grads = torch.autograd.grad(penalty, [p for p in experiment.model.parameters()], allow_unused=True)
    assert max(float(g.abs().max()) for g in grads if g is not None) > 1e-4


def test_a_network_that_dies_without_a_loss_spike_is_a_collapse_by_hand() -> None:
    """The quiet death (split MNIST, authors' preset with a head per task, LwF λ = 300, seed 0:
    task 1 at 0.999, then every task at its class share, 0.46-0.52, to the end, the task's own
    loss never spiking): by hand on 2-way heads, chance 0.5, "learned" from 0.9, "at chance" to
    0.6, validation rows after each of three tasks."""
    experiment = Experiment(RunConfig(method="finetune", epochs=1, validation=0.2))
    dead = [[0.999, 0.50, 0.52], [0.463, 0.495, 0.524], [0.463, 0.495, 0.51]]
    task, reason = experiment._collapsed(dead)
    assert task == 1 and reason.startswith("collapse to chance: from task 2 on") and "task 1 0.999 -> 0.463" in reason
    assert experiment._collapsed([[0.999, 0.5, 0.5], [0.99, 0.52, 0.5], [0.99, 0.5, 0.5]]) is None  # frozen
    assert experiment._collapsed([[0.999, 0.5, 0.5], [0.50, 0.98, 0.5], [0.5, 0.5, 0.97]]) is None  # forgets, learns
    # at chance after task 2, then learns task 3 (DER++ at lr 0.05, one epoch, split digits): alive
    assert experiment._collapsed([[0.95, 0.47, 0.5], [0.52, 0.51, 0.5], [0.5, 0.51, 1.0]]) is None
    assert experiment._collapsed([[0.78, 0.47, 0.5], [0.52, 0.51, 0.5], [0.5, 0.51, 0.5]]) is None  # 0.78: unlearned
    assert experiment._collapsed([[0.999, 0.95, 0.5], [0.999, 0.7, 0.5], [0.5, 0.5, 0.5]])[0] == 2  # died at task 3


def test_a_collapse_on_ten_way_heads_is_judged_on_the_same_share_of_the_way_from_chance() -> None:
    """The quiet death of permuted MNIST (MAS λ = 1 at lr 0.1, seed 1: nine tasks learned to
    0.67-0.84, then after task 10 every task at 0.09-0.21 and the new one at 0.10): by hand on
    10-way heads, chance 0.1, "learned" from 0.1 + 0.8·0.9 = 0.82, "at chance" to 0.1 + 0.2·0.9 =
    0.28: the same shares of the way from chance to perfect as a 2-way head's 0.9 and 0.6."""
    experiment = Experiment(RunConfig(method="finetune", benchmark="permuted_digits", epochs=1, validation=0.2,
                                      benchmark_options={"n_tasks": 3}))
    assert experiment.head_sizes == [10, 10, 10]  # a 10-way head per task
    dead = [[0.84, 0.12, 0.10], [0.839, 0.808, 0.09], [0.174, 0.206, 0.098]]
    task, reason = experiment._collapsed(dead)
    assert task == 2 and "task 1 0.839 -> 0.174" in reason and "task 2" not in reason  # 0.808 < 0.82: not learned
    assert experiment._collapsed([[0.84, 0.1, 0.1], [0.839, 0.808, 0.1], [0.174, 0.29, 0.098]]) is None  # 0.29 > 0.28
    assert experiment._collapsed([[0.84, 0.1, 0.1], [0.2, 0.808, 0.1], [0.1, 0.1, 0.75]]) is None  # forgets, learns


def test_lwf_past_its_edge_on_split_digits_is_recorded_as_a_collapse_with_validation_only() -> None:
    """LwF λ = 30 at split digits' lr 0.1, seed 0: task 1 learned (validation 1.0), then from
    task 2 on every head at chance with no loss spike. With validation data the run is diverged at
    task 2, keeping task 1's row; without validation data the rule is off (the test split never
    decides): the same death, on all the training data, ends `finished` at chance."""
    config = RunConfig(method="lwf", seed=0, validation=0.2, method_options={"lam": 30})
    experiment = Experiment(config)
    dead = experiment.run()
    assert dead.status == "diverged" and dead.diverged_task == 1
    assert dead.diverged_reason.startswith("collapse to chance") and math.isnan(dead.metrics["acc"])
    assert len(experiment.record.rows) == 1 and experiment.record.val_rows[0][0] >= 0.9
    assert dead.accuracy_matrix == experiment.record.rows
    unseen = Experiment(RunConfig(method="lwf", seed=0, method_options={"lam": 30})).run()
    assert unseen.status == "finished" and unseen.metrics["acc"] < 0.55

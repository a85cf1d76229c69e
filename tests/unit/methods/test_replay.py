"""The replay methods against hand computations: reservoir sampling keeps every sample seen with
probability capacity / seen, a class-balanced memory keeps `memory` rows of each class, A-GEM's
projection (eq. 11) in both directions of its inequality, DER++'s added loss (eq. 6), experience
replay's joint-batch loss; and each run resumed from a checkpoint equals the uninterrupted one."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.methods.agem import project
from spp_sweep.methods.base import Rows, Step
from spp_sweep.methods.buffer import Buffer
from spp_sweep.methods.derpp import DERpp
from spp_sweep.stacked import stack_refusal
from tests.conftest import tiny_model


def test_reservoir_sampling_keeps_each_sample_with_probability_capacity_over_seen() -> None:
    n, capacity, runs = 12, 3, 4000
    counts = torch.zeros(n)
    for seed in range(runs):
        buffer, generator = Buffer(capacity), torch.Generator().manual_seed(seed)
        for start in range(0, n, 4):  # three mini-batches of 4
            index = torch.arange(start, start + 4)
            buffer.add_reservoir(index[:, None].float(), index, head=0, generator=generator)
        assert len(buffer) == capacity and buffer.seen == n
        counts[buffer.y] += 1
    frequency = counts / runs
    # 3/12 = 0.25 each; the binomial's standard deviation over 4000 runs is 0.0068
    assert (frequency - 0.25).abs().max() < 0.03, frequency


def test_the_first_samples_fill_the_reservoir_in_order() -> None:
    buffer = Buffer(5)
    buffer.add_reservoir(torch.arange(3.0)[:, None], torch.arange(3), head=1, generator=torch.Generator())
    assert buffer.y.tolist() == [0, 1, 2] and buffer.heads.tolist() == [1, 1, 1]


def test_a_class_balanced_memory_keeps_memory_rows_of_each_class() -> None:
    buffer, generator = Buffer(2), torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])
    buffer.add_class_balanced(torch.arange(8.0)[:, None], y, head=0, generator=generator)
    assert sorted(buffer.y.tolist()) == [0, 0, 1, 1, 2]  # class 2 has one sample: all of it
    assert all(int(y[int(x)]) == int(label) for x, label in zip(buffer.x[:, 0], buffer.y))  # rows kept whole


def test_agem_projects_only_when_the_update_would_raise_the_memorys_loss() -> None:
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g . g_ref = -1 < 0
    projected = project(g, g_ref)  # g - (-1 / 2) g_ref = (0.5, 0.5)
    assert torch.allclose(projected, torch.tensor([0.5, 0.5])) and torch.dot(projected, g_ref).abs() < 1e-7
    agreeing = torch.tensor([1.0, 1.0])  # . (1, 0) = 1 >= 0: unchanged
    assert project(agreeing, torch.tensor([1.0, 0.0])) is agreeing
    orthogonal = torch.tensor([0.0, 2.0])  # dot 0: the inequality holds, unchanged
    assert project(orthogonal, torch.tensor([1.0, 0.0])) is orthogonal


def test_derpp_adds_alpha_logit_matching_and_beta_label_replay() -> None:
    model = tiny_model(n_in=3, n_hidden=2, head_sizes=(2, 2))
    method = DERpp(model, memory=4, alpha=0.3, beta=0.7)
    method.generator.manual_seed(5)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # tiny_model's dtype
    y = torch.tensor([0, 1, 1, 0])
    stored = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    method.observe(Step(0, 0, x, y, model.trunk(x), stored))
    assert torch.equal(method.buffer.outputs, stored)
    draws = copy.deepcopy(method.generator)
    step_x = x[:3]
    penalty = method.penalty(Step(1, 1, step_x, y[:3], model.trunk(step_x), model.heads[1](model.trunk(step_x))))
    first = torch.randperm(4, generator=draws)[:3]  # the two draws, made again by hand
    second = torch.randperm(4, generator=draws)[:3]
    with torch.no_grad():
        head = model.heads[0]  # every stored row is task 0's
        logits = lambda rows: x[rows] @ model.trunk.weight.T @ head.weight.T  # noqa: E731  (tiny_model: no biases)
        matching = ((logits(first) - stored[first]) ** 2).mean()
        labels = -F.log_softmax(logits(second), dim=1).gather(1, y[second][:, None]).mean()
    assert penalty is not None
    assert float(penalty.detach()) == pytest.approx(float(0.3 * matching + 0.7 * labels), rel=1e-6)


def test_experience_replay_minimises_the_mean_loss_over_the_joint_batch() -> None:
    experiment = Experiment(RunConfig(method="er", benchmark="split_digits", threads=1, epochs=1))
    x, y = experiment.benchmark.tasks[1].x_train[:6], experiment._targets[1][0][:6]
    stored = Rows(experiment.benchmark.tasks[0].x_train[:4], experiment._targets[0][0][:4], torch.zeros(4).long())
    forward, loss = experiment._forward_with_rows(1, x, y, stored)
    model = experiment.model
    by_hand = torch.cat([F.cross_entropy(model(x, 1), y, reduction="none"),
                         F.cross_entropy(model(stored.x, 0), stored.y, reduction="none")]).mean()
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(forward.loss) == pytest.approx(float(F.cross_entropy(model(x, 1), y)), rel=1e-6)


@pytest.mark.parametrize("method, options", [("er", {"buffer": "reservoir", "memory": 50}), ("er", {}),
                                             ("agem", {"memory": 5}), ("derpp", {"memory": 50})])
def test_a_replay_run_resumed_from_a_checkpoint_equals_the_uninterrupted_one(method: str, options: dict) -> None:
    config = RunConfig(method=method, benchmark="split_digits", threads=1, epochs=1, seed=3, method_options=options)
    saved = {}

    def keep(report, experiment) -> None:
        if report.task == 1:
            saved["state"] = copy.deepcopy(experiment.state_dict())

    uninterrupted = Experiment(config).run(on_task_end=keep)
    resumed = Experiment(config)
    resumed.load_state_dict(saved["state"])
    assert resumed.run().accuracy_matrix == uninterrupted.accuracy_matrix  # buffer and draws restored


def test_two_seeds_draw_different_buffers_and_replay_refuses_stacking_with_its_reason() -> None:
    buffers = []
    for seed in (0, 1):
        experiment = Experiment(RunConfig(method="er", benchmark="split_digits", threads=1, epochs=1, seed=seed,
                                          first_tasks=2, method_options={"memory": 5}))
        experiment.run()
        buffers.append(experiment.method.buffer.x)
    assert not torch.equal(buffers[0], buffers[1])
    for method in ("er", "agem", "derpp"):
        assert "own buffer" in stack_refusal(RunConfig(method=method).resolved()) or \
            "own memory" in stack_refusal(RunConfig(method=method).resolved())

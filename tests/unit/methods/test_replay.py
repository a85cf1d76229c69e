"""The replay methods against hand computations: reservoir sampling keeps every sample seen with
probability capacity / seen, a class-balanced memory keeps `memory` rows of each class, A-GEM's
projection (eq. 11) in both directions of its inequality (each member of a stack by its own), DER++'s
added loss (eq. 6), experience replay's joint-batch loss (a stack's padded rows carrying no weight);
each run resumed from a checkpoint equals the uninterrupted one; and a stack of replay runs whose
buffers differ in size equals its separate runs (tests/unit/test_stacked.py has the other methods)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment, forward_with_rows
from spp_sweep.methods.agem import project
from spp_sweep.methods.base import Rows, Step
from spp_sweep.methods.buffer import Buffer
from spp_sweep.methods.derpp import DERpp
from spp_sweep.stacked import StackedExperiment, stack_refusal
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
    (projected,) = project([g], [g_ref])  # g - (-1 / 2) g_ref = (0.5, 0.5)
    assert torch.allclose(projected, torch.tensor([0.5, 0.5])) and torch.dot(projected, g_ref).abs() < 1e-7
    agreeing = torch.tensor([1.0, 1.0])  # . (1, 0) = 1 >= 0: unchanged
    assert torch.equal(project([agreeing], [torch.tensor([1.0, 0.0])])[0], agreeing)
    orthogonal = torch.tensor([0.0, 2.0])  # dot 0: the inequality holds, unchanged
    assert torch.equal(project([orthogonal], [torch.tensor([1.0, 0.0])])[0], orthogonal)


def test_agem_projects_over_every_parameter_at_once_and_each_stack_member_by_its_own_dot_product() -> None:
    # two parameters, one vector: g = (1, 0 | 0), g_ref = (-1, 0 | 1); g . g_ref = -1, |g_ref|^2 = 2
    weight, bias = project([torch.tensor([1.0, 0.0]), torch.tensor([0.0])],
                           [torch.tensor([-1.0, 0.0]), torch.tensor([1.0])])
    assert torch.allclose(weight, torch.tensor([0.5, 0.0])) and torch.allclose(bias, torch.tensor([0.5]))
    # a stack of two members (rows): member 0 conflicts with its memory and is projected, member 1 agrees
    g, g_ref = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[-1.0, 1.0], [1.0, 0.0]])
    (stacked,) = project([g], [g_ref], lambda t: t.flatten(1).sum(1))  # Method.member_sum of a stack
    assert torch.allclose(stacked, torch.tensor([[0.5, 0.5], [1.0, 1.0]]))


def test_derpp_adds_alpha_logit_matching_and_beta_label_replay() -> None:
    model = tiny_model(n_in=3, n_hidden=2, head_sizes=(2, 2))
    method = DERpp(model, memory=4, alpha=0.3, beta=0.7)
    method.generator.manual_seed(5)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # tiny_model's dtype
    y = torch.tensor([0, 1, 1, 0])
    stored = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    method.observe(Step(0, 0, x, y, model.trunk(x), stored))
    assert torch.equal(method.buffers[0].outputs, stored)
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
    forward, loss = forward_with_rows(experiment.objective, experiment.method, 1, x, y, stored)
    model = experiment.model
    by_hand = torch.cat([F.cross_entropy(model(x, 1), y, reduction="none"),
                         F.cross_entropy(model(stored.x, 0), stored.y, reduction="none")]).mean()
    assert float(loss.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-6)
    assert float(forward.loss.detach()) == pytest.approx(float(F.cross_entropy(model(x, 1), y).detach()), rel=1e-6)


def test_a_stacks_padded_rows_carry_no_weight_and_each_member_divides_by_its_own_rows() -> None:
    configs = [RunConfig(method="er", benchmark="split_digits", threads=1, epochs=1, seed=s) for s in (0, 1)]
    stack = StackedExperiment(configs)
    tasks = stack.benchmark.tasks
    x = torch.stack([tasks[1].x_train[:6], tasks[1].x_train[6:12]])
    y = torch.stack([stack._targets[1][0][:6], stack._targets[1][0][6:12]])
    stored_x = torch.zeros(2, 4, tasks[0].x_train.shape[1])
    stored_x[0, :4], stored_x[1, :1] = tasks[0].x_train[:4], tasks[0].x_train[4:5]  # member 1: one row, 3 padding
    stored = Rows(stored_x, torch.stack([stack._targets[0][0][:4], stack._targets[0][0][4:8]]),
                  torch.zeros(2, 4).long(), counts=torch.tensor([4, 1]))
    _, loss = forward_with_rows(stack.objective, stack.method, 1, x, y, stored)
    for k, n in enumerate((4, 1)):
        model = Experiment(configs[k]).model  # member k's network, initialised as in the stack
        by_hand = torch.cat([F.cross_entropy(model(x[k], 1), y[k], reduction="none"),
                             F.cross_entropy(model(stored_x[k, :n], 0), stored.y[k, :n], reduction="none")]).mean()
        assert float(loss[k].detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    assert set(stack.method.heads_reached) == {0} and stack.method.heads_reached[0].tolist() == [True, True]


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


def test_two_seeds_draw_different_buffers() -> None:
    buffers = []
    for seed in (0, 1):
        experiment = Experiment(RunConfig(method="er", benchmark="split_digits", threads=1, epochs=1, seed=seed,
                                          first_tasks=2, method_options={"memory": 5}))
        experiment.run()
        buffers.append(experiment.method.buffers[0].x)
    assert not torch.equal(buffers[0], buffers[1])


# memory differs between members (a buffer-size grid as one stack), with the options each method stacks
STACKS = {"er": [{"memory": 5}, {"memory": 20}, {"memory": 5}],
          "er_reservoir": [{"memory": m, "buffer": "reservoir"} for m in (5, 40, 5)],
          "agem": [{"memory": m, "memory_batch": 16} for m in (3, 10, 3)],
          "derpp": [{"memory": 20, "alpha": 0.1}, {"memory": 60, "alpha": 1.0, "beta": 0.2}, {"memory": 20}]}


def replay_stack(name: str, output: str, lrs: tuple[float, ...] = (0.05, 0.1, 0.05), **settings) -> list[RunConfig]:
    return [RunConfig(method=name.split("_")[0], benchmark="split_digits", lr=lr, seed=seed, threads=1,
                      method_options=options, output=output, **{"epochs": 1, "validation": 0.2, **settings})
            for seed, (lr, options) in enumerate(zip(lrs, STACKS[name]))]


@pytest.mark.parametrize("output", ["per_task", "class_incremental"])
@pytest.mark.parametrize("name", sorted(STACKS))
def test_each_member_of_a_replay_stack_equals_its_separate_run(name: str, output: str) -> None:
    # dropout and Adam too: each member's masks and moments are its separate run's; buffers of different sizes
    configs = replay_stack(name, output, first_tasks=3, model_options={"dropout": 0.2}, optimizer="adam",
                           lrs=(0.001, 0.002, 0.001))
    stack = StackedExperiment(configs)
    results = stack.run()
    for k, config in enumerate(configs):
        separate = Experiment(config)
        alone = separate.run()
        assert results[k].stored_examples == alone.stored_examples > 0
        member = stack.model.member_state(k)
        for key, tensor in separate.model.state_dict().items():
            assert torch.allclose(member[key], tensor, rtol=0, atol=1e-5), (name, k, key)
        assert max(abs(a - b) for row, other in zip(results[k].accuracy_matrix, alone.accuracy_matrix)
                   for a, b in zip(row, other)) <= 0.02


def test_a_stack_draws_each_members_rows_as_its_buffer_alone_would_with_zero_padding() -> None:
    configs = replay_stack("derpp", "per_task", first_tasks=2)  # buffers of 20, 60 and 20 rows, with outputs
    stack = StackedExperiment(configs)
    stack.run()
    method = stack.method
    for count in (8, 50):  # 50: the small buffers give all their 20 rows, the large one 50
        alone = [buffer.draw(count, copy.deepcopy(generator))
                 for buffer, generator in zip(method.buffers, method.generators)]
        rows = method.draw(count)
        assert rows is not None and rows.counts is not None and rows.outputs is not None
        assert rows.counts.tolist() == [len(r.y) for r in alone] == [min(count, len(b)) for b in method.buffers]
        for k, mine in enumerate(alone):
            n = len(mine.y)
            assert torch.equal(rows.x[k, :n], mine.x) and torch.equal(rows.y[k, :n], mine.y)
            assert torch.equal(rows.heads[k, :n], mine.heads) and torch.equal(rows.outputs[k, :n], mine.outputs)
            assert not rows.x[k, n:].any() and not rows.y[k, n:].any() and not rows.outputs[k, n:].any()
    stack = StackedExperiment(replay_stack("er", "per_task", first_tasks=1))  # class-balanced: 5, 20, 5 per class
    stack.run()
    before = stack.method.draw(1000)
    stack.method.buffers[1].add_class_balanced(torch.ones(3, rows.x.shape[-1]), torch.zeros(3).long(), 0,
                                               torch.Generator())
    after = stack.method.draw(1000)  # a change to one buffer reaches the next draw
    assert before is not None and after is not None and after.counts is not None and before.counts is not None
    assert (after.counts - before.counts).tolist() == [0, 3, 0] and (after.x[1] == 1).all(-1).sum() == 3


def test_a_replay_stack_resumes_and_repacks_with_each_members_buffer() -> None:
    configs = replay_stack("derpp", "per_task")
    saved = {}

    def keep(task: int, stack: StackedExperiment) -> None:
        if task == 1:
            stack.members[1].stop()  # an early-stopping decision: the member leaves before task 2
            saved["state"] = copy.deepcopy(stack.state_dict())

    uninterrupted = StackedExperiment(configs).run(on_task_end=keep)
    resumed = StackedExperiment(configs)
    resumed.load_state_dict(saved["state"])
    results = resumed.run()
    assert resumed.size == 2 and [len(b) for b in resumed.method.buffers] == [20, 20]  # member 1's buffer left
    for a, b in zip(results, uninterrupted):
        assert a.accuracy_matrix == b.accuracy_matrix and a.stored_examples == b.stored_examples


def test_replay_on_a_stacked_cnn_is_refused_with_its_reason() -> None:
    refusal = stack_refusal(RunConfig(method="er", benchmark="split_digits", model="vgg9").resolved())
    assert refusal is not None and "batch norm" in refusal

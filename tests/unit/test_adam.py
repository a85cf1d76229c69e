"""spp_sweep.adam against torch.optim.Adam, to the bit (one model: a parameter that misses some
steps, an lr changed between epochs), a hand computation of the first two steps (Kingma & Ba,
Algorithm 1), a stacked member against its separate run, and what Adam refuses."""

from __future__ import annotations

import math

import pytest
import torch

from spp_sweep.adam import Adam, member_adam_step
from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import ConfigError
from spp_sweep.stacked import StackedExperiment

from .optimizer_steps import same_steps


def test_the_same_steps_as_torch_optim_adam() -> None:
    # head 0 reached every third step only: no gradient, no step (its moments unchanged) otherwise
    same_steps(lambda params: Adam(params, lr=0.01), lambda params: torch.optim.Adam(params, lr=0.01),
               reached=lambda step: step % 3 and 1)


def test_two_steps_by_hand() -> None:
    """g1 = 2, g2 = -1 on p0 = 1, lr 0.1: m1 = 0.2, v1 = 0.004, p1 = 1 - 0.1 * 2 / (2 + 1e-8);
    m2 = 0.08, v2 = 0.004996, p2 = p1 - 0.1 / 0.19 * 0.08 / (sqrt(0.004996 / 0.001999) + 1e-8)."""
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = Adam([p], lr=0.1)
    expected = 1.0
    for g, (m, v, t) in zip([2.0, -1.0], [(0.2, 0.004, 1), (0.1 * 0.2 * 9 - 0.1, 0.999 * 0.004 + 0.001, 2)]):
        p.grad = torch.tensor([g], dtype=torch.float64)
        optimizer.step()
        expected -= 0.1 / (1 - 0.9**t) * m / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        assert p.item() == pytest.approx(expected, rel=1e-12)
    assert m == pytest.approx(0.08)  # the hand values themselves: 0.9 * 0.2 + 0.1 * (-1)


def test_a_member_step_equals_its_separate_step_and_skips_what_its_batch_missed() -> None:
    generator = torch.Generator().manual_seed(3)
    stacked = torch.randn(3, 4, 2, generator=generator)
    alone = [stacked[k].clone() for k in range(3)]
    optimizers = [Adam([torch.nn.Parameter(a)], lr=lr) for a, lr in zip(alone, (0.1, 0.01, 0.05))]
    state: dict = {}
    for step in range(5):
        grad = torch.randn(3, 4, 2, generator=generator)
        reached = torch.tensor([True, step % 2 == 0, True])
        member_adam_step(stacked, grad, state, [0.1, 0.01, 0.05], reached)
        for k, optimizer in enumerate(optimizers):
            param = optimizer.param_groups[0]["params"][0]
            param.grad = grad[k].clone() if bool(reached[k]) else None
            optimizer.step()
    for k, optimizer in enumerate(optimizers):
        assert torch.equal(stacked[k], optimizer.param_groups[0]["params"][0].detach())
    assert state["steps"] == [5, 3, 5]


def test_a_stack_trained_with_adam_equals_its_separate_runs() -> None:
    configs = [RunConfig(method="ewc", benchmark="split_digits", optimizer="adam", lr=lr, seed=seed, epochs=1,
                         lr_decay=1.0, threads=1, first_tasks=3, method_options={"lam": lam})
               for lr, seed, lam in [(0.001, 0, 10.0), (0.003, 1, 1000.0)]]
    stacked = StackedExperiment(configs).run()
    for config, member in zip(configs, stacked):
        alone = Experiment(config).run()
        assert alone.accuracy_matrix == member.accuracy_matrix  # on a CPU: to the last bit


@pytest.mark.parametrize("settings, match", [
    ({"optimizer": "adam", "momentum": 0.9}, "momentum=0.9 is SGD's"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is invalid"),
    ({"optimizer": "adam", "method": "spp", "method_options": {"penalty_step": "implicit"}},
     "implicit is the exact proximal step of plain SGD; under adam"),
])
def test_what_adam_refuses_is_one_line_before_training(settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RunConfig(**{"benchmark": "split_digits", **settings}).resolved()


def test_iterations_count_complete_mini_batches_over_fresh_passes() -> None:
    """The reference protocol's budget: exactly `iterations` batches per task, each pass over the
    data a new permutation cut to complete batches; a stack's members draw as their separate runs."""
    config = RunConfig(method="finetune", benchmark="split_digits", iterations=7, batch_size=128, threads=1,
                       first_tasks=2)
    experiment = Experiment(config)
    n = len(experiment._targets[0][0])  # about 288 samples: 2 complete batches of 128 per pass
    schedule = experiment._schedule([0], torch.Generator().manual_seed(0))
    assert len(schedule) == 7 and all(len(index) == 128 for _, index in schedule)
    per_pass = (n // 128) * 128
    first_pass = torch.cat([index for _, index in schedule[: per_pass // 128]])
    assert sorted(first_pass.tolist()) == sorted(set(first_pass.tolist()))  # no sample twice within a pass
    assert experiment.config.epochs == 1
    stacked = StackedExperiment([config, RunConfig(**{**config.to_dict(), "seed": 1})]).run()
    assert stacked[0].accuracy_matrix == Experiment(config).run().accuracy_matrix
    with pytest.raises(ConfigError, match="both set a task's length"):
        RunConfig(benchmark="split_digits", iterations=10, epochs=3).resolved()

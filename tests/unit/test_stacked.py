"""Stacked runs (spp_sweep/stacked.py): K configurations as one batched model agree with K
separate runs, each member diverges on its own, and a stack resumes exactly from a checkpoint.

Tolerance: batched kernels (bmm) sum in another order than the separate runs' addmm, so
parameters may differ in the last bits of float32. After the first two tasks (every hook has
run: importance pass, accumulation, penalty or distillation, implicit step, SI's path integral)
every parameter agrees within PARAMETER_TOLERANCE of its separate run's; whole 5-task runs
agree to within ACCURACY_TOLERANCE on every entry of the accuracy matrix (on this machine the
matrices are identical).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment, run_experiment
from spp_sweep.errors import ConfigError
from spp_sweep.methods import METHODS
from spp_sweep.stacked import StackedExperiment, run_stacked, stack_key

PARAMETER_TOLERANCE = 1e-5  # absolute, on parameters of magnitude ~0.01-1 after two tasks
ACCURACY_TOLERANCE = 0.02  # per matrix entry of a whole run (about one test image in 50)

# Per method, member configurations that differ in what a stack lets differ: lr, seed, stackable options.
VARYING = {"spp": {"lam": [0.5, 30.0]}, "ewc": {"lam": [1.0, 300.0]}, "mas": {"lam": [0.1, 10.0]},
           "si": {"lam": [0.1, 3.0], "xi": [0.1, 1.0]}, "lwf": {"lam": [0.5, 2.0]}}


def member_configs(method: str, **settings) -> list[RunConfig]:
    options = VARYING.get(method, {})
    configs = []
    for k, (lr, seed) in enumerate([(0.05, 0), (0.1, 1), (0.05, 2)]):
        chosen = {name: values[k % len(values)] for name, values in options.items()}
        configs.append(RunConfig(method=method, benchmark="split_digits", lr=lr, seed=seed, threads=1,
                                 method_options=chosen, **{"epochs": 1, "validation": 0.2, **settings}))
    return configs


def separate_parameters(config: RunConfig) -> dict[str, torch.Tensor]:
    experiment = Experiment(config)
    experiment.run()
    return experiment.model.state_dict()


# the replay methods too (buffers of different sizes, Adam, both output layouts: methods/test_replay.py)
@pytest.mark.parametrize("method", sorted(m for m, cls in METHODS.items() if cls.stack_refusal is None))
def test_every_member_matches_its_separate_run_after_two_tasks(method: str) -> None:
    configs = member_configs(method, first_tasks=2, model_options={"dropout": 0.2}, momentum=0.0)
    stack = StackedExperiment(configs)
    stack.run()
    for k, config in enumerate(configs):
        separate = separate_parameters(config)
        member = stack.model.member_state(k)
        assert member.keys() == separate.keys()
        for name, tensor in separate.items():
            assert torch.allclose(member[name], tensor, rtol=0, atol=PARAMETER_TOLERANCE), (method, k, name)


@pytest.mark.parametrize("method,options", [("spp", {"penalty_step": "implicit"}), ("ewc", {"fisher": "empirical"}),
                                            ("spp", {"importance": "per_sample", "beta": 3.0})])
def test_method_variants_stack_too(method: str, options: dict) -> None:
    configs = [RunConfig(**{**c.to_dict(), "method_options": {**c.method_options, **options}})
               for c in member_configs(method, first_tasks=2)]
    stack = StackedExperiment(configs)
    stack.run()
    for k, config in enumerate(configs):
        separate = separate_parameters(config)
        for name, tensor in separate.items():
            assert torch.allclose(stack.model.member_state(k)[name], tensor, rtol=0, atol=PARAMETER_TOLERANCE)


@pytest.mark.parametrize("method", ["spp", "joint", "lwf"])
def test_whole_runs_give_the_separate_runs_tables(method: str) -> None:
    # momentum and dropout too: each member's buffer and masks are its separate run's
    configs = member_configs(method, epochs=2, momentum=0.5, model_options={"dropout": 0.2})
    stacked = run_stacked(configs)
    for result, config in zip(stacked, configs):
        separate = run_experiment(config)
        assert result.status == separate.status == "finished"
        assert result.stack_members == 3 and result.config == separate.config
        for row, reference in zip(result.accuracy_matrix + result.validation_matrix,
                                  separate.accuracy_matrix + separate.validation_matrix):
            assert max(abs(a - b) for a, b in zip(row, reference)) <= ACCURACY_TOLERANCE
        assert abs(result.metrics["acc"] - separate.metrics["acc"]) <= ACCURACY_TOLERANCE


def test_a_diverging_member_is_recorded_and_the_others_go_on() -> None:
    configs = [RunConfig(method="spp", benchmark="split_digits", epochs=1, lr=lr, seed=0, threads=1)
               for lr in (0.05, 1e4)]
    good, bad = run_stacked(configs)
    assert bad.status == "diverged" and bad.diverged_task == 0 and math.isnan(bad.metrics["acc"])
    assert bad.accuracy_matrix == [] and "not finite" in bad.diverged_reason
    alone = run_experiment(configs[0])
    assert good.status == "finished"
    assert max(abs(a - b) for r, s in zip(good.accuracy_matrix, alone.accuracy_matrix)
               for a, b in zip(r, s)) <= ACCURACY_TOLERANCE


def test_a_member_that_collapses_to_chance_is_recorded_as_its_separate_run_is() -> None:
    """LwF λ = 30 (seed 0) dies at task 2 without a loss spike (engine._collapsed); beside it
    λ = 0.5 finishes: the stack records each as its separate run does."""
    configs = [RunConfig(method="lwf", benchmark="split_digits", seed=0, threads=1, validation=0.2,
                         method_options={"lam": lam}) for lam in (30.0, 0.5)]
    stacked = run_stacked(configs)
    for result, config in zip(stacked, configs, strict=True):
        separate = run_experiment(config)
        assert (result.status, result.diverged_task, result.diverged_reason) == \
            (separate.status, separate.diverged_task, separate.diverged_reason)
        assert len(result.accuracy_matrix) == len(separate.accuracy_matrix)
    assert [r.status for r in stacked] == ["diverged", "finished"] and stacked[0].diverged_task == 1


def test_a_stack_resumes_from_a_checkpoint_with_identical_numbers() -> None:
    configs = member_configs("si", epochs=1)
    saved = {}

    def keep(task: int, stack: StackedExperiment) -> None:
        if task == 1:
            saved["state"] = copy.deepcopy(stack.state_dict())  # as written to disk: not the live tensors

    uninterrupted = StackedExperiment(configs).run(on_task_end=keep)
    resumed = StackedExperiment(configs)
    resumed.load_state_dict(saved["state"])
    assert resumed.next_task == 2
    for a, b in zip(resumed.run(), uninterrupted):
        assert a.accuracy_matrix == b.accuracy_matrix and a.metrics == b.metrics  # bit-identical on CPU


def test_what_cannot_stack_is_refused_with_the_reason() -> None:
    joint = RunConfig(method="joint", benchmark="digit_domains", seed=0)  # the VAE: convolutions and padded steps
    with pytest.raises(ConfigError, match="several tasks at once"):
        StackedExperiment([joint, joint])  # convolutional stacks: tests/unit/test_stacked_conv.py
    a, b = (RunConfig(method="spp", benchmark="split_digits", epochs=e) for e in (1, 2))
    with pytest.raises(ConfigError, match="these differ: epochs"):
        StackedExperiment([a, b])
    c, d = (RunConfig(method="spp", benchmark="split_digits", method_options={"penalty_step": s})
            for s in ("explicit", "implicit"))
    assert stack_key(c.resolved()) != stack_key(d.resolved())  # not stackable: a separate stack
    e, f = (RunConfig(method="spp", benchmark="split_digits", lr=lr, seed=s, method_options={"lam": lam})
            for lr, s, lam in ((0.1, 0, 1.0), (0.01, 3, 100.0)))
    assert stack_key(e.resolved()) == stack_key(f.resolved())

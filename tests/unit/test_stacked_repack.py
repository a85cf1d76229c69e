"""Repacking a stack (stacked.py, StackedExperiment.repack): members that ended (stopped by early
stopping, or diverged) leave the batched model before the next task, and the survivors' numbers
are those of the stack that kept the ended members frozen in it, for every method (their state
is sliced along the member dimension), through a checkpoint too, with convolutions' per-task
batch-norm statistics, and with each member's time adding up to the stack's."""

from __future__ import annotations

import copy

import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.methods import METHODS
from spp_sweep.stacked import StackedExperiment

from .test_stacked import member_configs
from .test_stacked_conv import member_configs as conv_configs
from .test_stacked_conv import tiny_images


def stop_after_first_task(positions: list[int]):
    """An ``on_task_end`` that stops the members at ``positions`` after task 0 (as the rungs do)
    and records the model's size at every task end."""
    sizes: list[int] = []

    def on_task_end(task: int, stack: StackedExperiment) -> None:
        sizes.append(stack.size)
        if task == 0:
            for k in positions:
                stack.members[k].stop()
    return on_task_end, sizes


def assert_same_results(left: list, right: list) -> None:
    for a, b in zip(left, right):
        assert a.status == b.status
        assert a.accuracy_matrix == b.accuracy_matrix and a.validation_matrix == b.validation_matrix
        assert a.metrics.keys() == b.metrics.keys()
        assert all(a.metrics[k] == b.metrics[k] or (a.metrics[k] != a.metrics[k] and b.metrics[k] != b.metrics[k])
                   for k in a.metrics)  # NaN (a stopped or diverged run's) equals NaN here


@pytest.mark.parametrize("method", sorted(m for m, cls in METHODS.items() if cls.stack_refusal is None))
def test_ended_members_leave_the_model_and_the_survivors_numbers_stay(method: str) -> None:
    configs = member_configs(method, first_tasks=3, model_options={"dropout": 0.2}, momentum=0.5,
                             save_importances=True, save_parameters=True)  # per-member arrays, by model position
    kept_in = StackedExperiment(configs, repack=False)
    on_task_end, kept_sizes = stop_after_first_task([1])
    frozen = kept_in.run(on_task_end=on_task_end)
    repacked_stack = StackedExperiment(configs)
    on_task_end, sizes = stop_after_first_task([1])
    repacked = repacked_stack.run(on_task_end=on_task_end)
    assert kept_sizes == [3, 3, 3] and sizes == [3, 2, 2]  # compute freed from task 1 on
    assert repacked_stack.in_model == [0, 2] and [r.status for r in repacked] == ["finished", "stopped", "finished"]
    assert_same_results(repacked, frozen)  # bit-identical on CPU
    assert len(repacked_stack.members[2].parameters) == 3  # recorded after every task, from its new position
    for survivor, reference in zip(repacked_stack.members, kept_in.members):
        for kept, expected in ((survivor.importances, reference.importances),
                               (survivor.parameters, reference.parameters),
                               (survivor.probe_importances, reference.probe_importances)):
            assert len(kept) == len(expected)
            for ours, theirs in zip(kept, expected):
                assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)
    for position, k in enumerate(repacked_stack.in_model):
        survivor, reference = repacked_stack.model.member_state(position), kept_in.model.member_state(k)
        assert survivor.keys() == reference.keys()
        for name, tensor in reference.items():
            assert torch.equal(survivor[name], tensor), (method, k, name)


def test_a_diverged_member_leaves_the_model_too() -> None:
    configs = [RunConfig(method="spp", benchmark="split_digits", epochs=1, lr=lr, seed=0, threads=1, first_tasks=3)
               for lr in (0.05, 1e4, 0.1)]
    stack = StackedExperiment(configs)
    sizes: list[int] = []
    results = stack.run(on_task_end=lambda task, s: sizes.append(s.size))
    assert [r.status for r in results] == ["finished", "diverged", "finished"]
    assert sizes == [3, 2, 2] and stack.in_model == [0, 2]  # diverged in task 0: out of the model from task 1
    assert_same_results(results, StackedExperiment(configs, repack=False).run())


def test_a_checkpoint_after_a_repack_resumes_with_identical_numbers() -> None:
    configs = member_configs("si", first_tasks=4, momentum=0.5, model_options={"dropout": 0.2})
    saved = {}
    stop, _ = stop_after_first_task([0])

    def on_task_end(task: int, stack: StackedExperiment) -> None:
        stop(task, stack)
        if task == 1:
            saved["state"] = copy.deepcopy(stack.state_dict())  # repacked at task 1's start

    uninterrupted = StackedExperiment(configs).run(on_task_end=on_task_end)
    assert saved["state"]["in_model"] == [1, 2]
    resumed = StackedExperiment(configs)
    resumed.load_state_dict(saved["state"])
    assert resumed.size == 2 and resumed.in_model == [1, 2] and resumed.next_task == 2
    assert_same_results(resumed.run(), uninterrupted)


def test_a_checkpoint_from_before_repacking_existed_still_loads() -> None:
    configs = member_configs("spp", first_tasks=3)
    saved = {}

    def keep(task: int, stack: StackedExperiment) -> None:
        if task == 0:
            saved["state"] = copy.deepcopy(stack.state_dict())

    uninterrupted = StackedExperiment(configs).run(on_task_end=keep)
    del saved["state"]["in_model"]  # as written by the code before this one
    resumed = StackedExperiment(configs)
    resumed.load_state_dict(saved["state"])
    assert resumed.in_model == [0, 1, 2]
    assert_same_results(resumed.run(), uninterrupted)


@pytest.mark.parametrize("method", ["ewc", "lwf"])
def test_a_convolutional_stack_repacks_with_its_batch_norm_statistics(method: str) -> None:
    data = tiny_images(n_tasks=3)
    configs = conv_configs(method)
    frozen_stack = StackedExperiment(configs, benchmark=data, repack=False)
    on_task_end, _ = stop_after_first_task([0])
    frozen = frozen_stack.run(on_task_end=on_task_end)
    repacked_stack = StackedExperiment(configs, benchmark=data)
    on_task_end, sizes = stop_after_first_task([0])
    repacked = repacked_stack.run(on_task_end=on_task_end)
    assert sizes == [3, 2, 2]
    assert_same_results(repacked, frozen)
    for task, stats in frozen_stack.model.norm_stats.items():  # each task's own statistics, the survivors'
        for name, tensor in stats.items():
            assert torch.equal(repacked_stack.model.norm_stats[task][name], tensor[1:]), (task, name)


def test_each_members_time_adds_up_to_the_stacks() -> None:
    configs = member_configs("mas", first_tasks=3)
    stack = StackedExperiment(configs)
    on_task_end, _ = stop_after_first_task([1, 2])
    stack.run(on_task_end=on_task_end)
    assert sum(m.seconds for m in stack.members) == pytest.approx(stack.seconds, rel=1e-9)
    assert stack.members[0].seconds > stack.members[1].seconds  # alone in the model for tasks 1-2


def test_a_state_without_the_member_dimension_keeps_the_ended_members_frozen(capsys) -> None:
    configs = member_configs("spp", first_tasks=3)
    stack = StackedExperiment(configs)
    held = stack.method.state_dict
    stack.method.state_dict = lambda: {**held(), "steps": torch.tensor(7)}  # a scalar: no member dimension
    on_task_end, sizes = stop_after_first_task([1])
    results = stack.run(on_task_end=on_task_end)
    assert sizes == [3, 3, 3] and stack.in_model == [0, 1, 2] and not stack.repacks
    assert capsys.readouterr().err.count("ended members stay in the stack (a state tensor of shape ()") == 1
    on_task_end, _ = stop_after_first_task([1])
    assert_same_results(results, StackedExperiment(configs, repack=False).run(on_task_end=on_task_end))


def test_a_stack_of_continual_vaes_repacks_with_its_pictures() -> None:
    configs = [RunConfig(method="spp", benchmark="digit_domains", epochs=1, seed=seed, lr=0.05, threads=1,
                         method_options={"lam": lam, "penalty_step": "implicit"})
               for seed, lam in ((0, 1.0), (1, 4.0), (2, 10.0))]
    runs = {}
    for repack in (False, True):
        stack = StackedExperiment(configs, repack=repack)
        on_task_end, sizes = stop_after_first_task([1])
        runs[repack] = stack, stack.run(on_task_end=on_task_end), sizes
    (frozen_stack, frozen, _), (repacked_stack, repacked, sizes) = runs[False], runs[True]
    assert sizes == [3, 2] and repacked_stack.in_model == [0, 2]
    assert_same_results(repacked, frozen)  # the -ELBO matrices, to the bit
    for survivor, reference in zip(repacked_stack.members, frozen_stack.members):  # Figure 5's pictures per task
        assert len(survivor.pictures) == len(reference.pictures) == len(survivor.rows) > 0
        for ours, theirs in zip(survivor.pictures, reference.pictures):
            assert all(torch.equal(ours[name], theirs[name]) for name in theirs)

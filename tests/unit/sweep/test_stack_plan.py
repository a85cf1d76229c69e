"""stack: auto for convolutional members (spp_sweep/sweep/stack_plan.py): on a CPU only those of
few multiply-adds per sample stack (grouped convolutions lose there, bench/stacked_sweep.py cnn),
on a GPU every one, and a CNN's estimates count its convolutions' outputs and arithmetic."""

from __future__ import annotations

import dataclasses

from spp_sweep.config import RunConfig
from spp_sweep.models import build_model
from spp_sweep.sweep import stack_plan
from spp_sweep.sweep.stack_plan import forward_cost, member_size, plan_stacks
from spp_sweep.sweep.study import parse_study

CNN_STUDY = {"benchmark": "visual_sequence",
             "fixed": {"model": "vgg9", "model_options": {"channels": [4, 8, 8], "fc": 16}},
             "methods": {"spp": {"space": {"lam": [1.0, 2.0, 3.0]}}}}


def grid(study):
    return [study.trial_spec(m, p, s) for m in study.methods for p in m.grid_points() for s in study.seeds]


def test_auto_trains_cnns_alone_on_a_cpu_says_why_and_a_number_forces_a_stack(monkeypatch) -> None:
    study = parse_study(CNN_STUDY)
    points = grid(study)
    unknown = plan_stacks(study, points, study.study_part(), slots=1)  # no visual-sequence data here
    assert unknown.specs == points and "only where its cost per sample is known" in unknown.summary
    # the visual sequence's real shapes, as on a machine that has its files: VGG-9's cost is counted
    monkeypatch.setattr(stack_plan, "_benchmark_shape", lambda name, options: ((3, 32, 32), [10] * 5))
    plan = plan_stacks(study, points, study.study_part(), slots=1)
    assert plan.specs == points and "multiply-adds per sample and this model needs" in plan.summary
    forced = plan_stacks(dataclasses.replace(study, stack=3), points, study.study_part(), slots=1)
    assert len(forced.specs) == 1 and len(forced.specs[0]["members"]) == 3


def test_auto_stacks_cnns_where_trials_get_gpus() -> None:
    study = parse_study({**CNN_STUDY, "resources": {"cpu": 1, "gpu": 0.25}})
    plan = plan_stacks(study, grid(study), study.study_part(), slots=1)
    assert len(plan.specs) == 1 and len(plan.specs[0]["members"]) == 3, plan.summary


def test_the_small_continual_vae_stacks_on_a_cpu() -> None:
    study = parse_study({"benchmark": "digit_domains", "methods": {"spp": {"space": {"lam": [1.0, 10.0]}}}})
    plan = plan_stacks(study, grid(study), study.study_part(), slots=1)
    assert len(plan.specs) == 1 and len(plan.specs[0]["members"]) == 2, plan.summary


def test_a_cnns_forward_cost_counts_every_layers_output_and_multiply_adds() -> None:
    model = build_model("vgg9", (3, 8, 8), [2], {"channels": [4, 8, 8], "fc": 16})
    cost = forward_cost(model, (3, 8, 8))
    # by hand: per block, two conv-BN-ReLU (3 outputs each of C x side x side) and a max-pool
    blocks = 6 * 4 * 8 * 8 + 4 * 4 * 4 + 6 * 8 * 4 * 4 + 8 * 2 * 2 + 6 * 8 * 2 * 2 + 8 * 1 * 1
    fully_connected = 8 + 4 * 16 + 2  # Flatten, Linear-ReLU-Linear-ReLU of 16, the 2-way head
    assert cost.widths == blocks + fully_connected and cost.largest == 4 * 8 * 8
    # 3x3 convolutions: output values x C_in x 9; then 8x16, 16x16 and 16x2 matrices
    convolutions = (4 * 64 * 3 + 4 * 64 * 4 + 8 * 16 * 4 + 8 * 16 * 8 + 8 * 4 * 8 + 8 * 4 * 8) * 9
    assert cost.multiply_adds == convolutions + 8 * 16 + 16 * 16 + 16 * 2


def test_a_buffer_size_grid_is_one_stack_sized_by_its_largest_buffer() -> None:
    study = parse_study({"benchmark": "split_digits", "methods": {"er": {"space": {"memory": [10, 50, 200]}}}})
    plan = plan_stacks(study, grid(study), study.study_part(), slots=1)
    assert len(plan.specs) == 1, plan.summary
    assert sorted(m["params"]["memory"] for m in plan.specs[0]["members"]) == [10, 50, 200]
    small, large = (member_size(RunConfig(method="er", benchmark="split_digits",
                                          method_options={"memory": m}).resolved())[0] for m in (10, 200))
    assert large - small == 4 * 190 * 10 * 64  # 190 more rows of each of 10 classes, 64 pixels, float32


def test_auto_splits_a_stack_only_where_that_shortens_the_phase_and_starts_the_costliest_first() -> None:
    # 12 λ x 5 seeds of SPP and 5 seeds of fine-tuning on 2 slots: one stack of 60 beside one of 5
    # keeps one worker busy while the other idles. By hand, split digits' MLP members costing 0.11
    # of a lone run each in a stack: 60 | 5 take 1 + 59 x 0.11 = 7.49; 30 + 5 | 30 take 5.63;
    # 30 + 5 | 15 + 15 also 5.63 (no gain), 15 + 15 + 5 | 15 + 15 6.52: stop at 30, 30, 5
    study = parse_study({"benchmark": "split_digits", "seeds": 5, "methods": {
        "spp": {"space": {"lam": [0.01, 0.1, 0.5, 1, 2, 4, 6, 8, 12, 100, 1000, 10000]}}, "finetune": {}}})
    plan = plan_stacks(study, grid(study), study.study_part(), slots=2)
    assert [len(spec["members"]) for spec in plan.specs] == [30, 30, 5], plan.summary
    one_slot = plan_stacks(study, grid(study), study.study_part(), slots=1)  # splitting only adds work
    assert [len(spec["members"]) for spec in one_slot.specs] == [60, 5]
    # 3 λ x 2 seeds of SPP beside 2 fine-tuning runs on 2 slots: 6 | 2 take 1.55 lone runs; 3 + 2 | 3
    # would take 2.33: the small stacks stay whole. Alone on 2 slots, a stack of 2 is halved (1.11 -> 1)
    small = parse_study({"benchmark": "split_digits", "seeds": 2, "methods": {
        "spp": {"space": {"lam": [1, 2, 3]}}, "finetune": {}}})
    assert [len(spec.get("members", [spec])) for spec in
            plan_stacks(small, grid(small), small.study_part(), slots=2).specs] == [6, 2]
    pair = parse_study({"benchmark": "split_digits", "methods": {"spp": {"space": {"lam": [1, 2]}}}})
    assert len(plan_stacks(pair, grid(pair), pair.study_part(), slots=2).specs) == 2


def test_a_members_cost_follows_the_measured_stacks_by_its_multiply_adds() -> None:
    # the measured points, halfway between two on a log scale, the ends held, GPU and unknown
    assert stack_plan.member_cost(6_570, gpu=False) == 0.11
    assert abs(stack_plan.member_cost(50_826, gpu=False) - 0.56) < 1e-12
    assert abs(stack_plan.member_cost(round((6_570 * 50_826) ** 0.5), gpu=False) - 0.335) < 1e-4
    assert stack_plan.member_cost(100, gpu=False) == 0.11 and stack_plan.member_cost(10**7, gpu=False) == 0.96
    assert stack_plan.member_cost(10**7, gpu=True) == 0.11 and stack_plan.member_cost(None, gpu=False) == 0.5


def test_makespan_is_longest_processing_time_first_by_hand() -> None:
    # 5, 4, 3, 3, 2 on 2 workers, each to the one that frees first: 5 | 4; 5 | 4 + 3 = 7;
    # 5 + 3 = 8 | 7; 8 | 7 + 2 = 9: the phase ends at 9
    assert stack_plan.makespan([3, 5, 2, 4, 3], 2) == 9
    assert stack_plan.makespan([3, 5, 2, 4, 3], 1) == 17
    assert stack_plan.makespan([1, 1], 4) == 1

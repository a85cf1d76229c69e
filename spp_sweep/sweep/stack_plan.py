"""Grid points -> stacked trials: compatible configurations train as one batched model.

A grid phase's points that differ only in learning rate, seed and their method's stackable
options (λ; SI's ξ) become one Ray trial each holding up to N members (spp_sweep/stacked.py).
The study's ``stack`` says N: ``auto`` (the default) takes whole groups, capped so the stack
fits the trial's memory, splits the costliest where that shortens the phase's estimated wall
time on the cluster's slots (``balance``: one 60-member stack beside a 5-member one on two slots
leaves a worker idle) and starts the costliest first, and on a CPU leaves members above
CPU_STACK_MAX_MULTIPLY_ADDS per sample alone (compute-bound, they gain nothing); a number caps
the members per trial; ``off`` trains one configuration per trial.
Configurations that cannot stack (joint training on a CNN or the VAE; ``stacked.stack_refusal``)
stay single.
Each stacked trial reports every member's results, and ``analysis.load`` expands it into one
row per configuration, so trials.csv, the report and resume see exactly what they see unstacked.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ResolvedRunConfig, RunConfig
from .study import MethodSearch, Study, run_settings

# What one member holds besides its activations, in copies of its parameters: weights,
# gradients, importance, anchor, last importance, a momentum buffer, SI's three path tensors,
# LwF's old network. An over-estimate for most methods, on purpose.
PARAMETER_COPIES = 10
# Copies kept of every layer's output (the output and its gradient; forward_cost counts every
# layer, ReLU and pooling included).
ACTIVATION_COPIES = 2
MEMORY_SHARE = 0.5  # of the memory a trial may use, what its stack may fill
DEFAULT_CAP = 64  # members per trial where memory could not be estimated (data not on the driver)
# members per trial at most, whatever memory allows: past a few dozen a stack gains no more speed
# (bench/stacked_sweep.py), and an estimate off by a small factor at thousands of members is an
# out-of-memory kill of the worker
MAX_MEMBERS = 256
ASSUMED_GPU_BYTES = 16 * 2**30  # a GPU's memory where the driver has none to ask
# On a CPU a member that needs many multiply-adds per sample is compute-bound and a stack gains
# nothing (bench/stacked_sweep.py, docs/results/speed.md): MLPs of 6.6k, 51k, 167k and 535k
# multiply-adds 9.2x, 1.8x, 1.0x, 0.7x faster stacked; the continual VAE on 8x8 digits (about
# 95k) 2.1x, on 28x28 MNIST (about 1.5M) 0.77x; VGG-9 at 32x32 (millions; grouped convolutions)
# 0.70-0.85x. So on a CPU `auto` stacks members of at most this many; on a GPU, every one.
CPU_STACK_MAX_MULTIPLY_ADDS = 100_000
# What one more member adds to a stack's time, in lone runs, for balancing stacks over slots:
# on a CPU, 51-member MLP stacks took 0.11, 0.56 and 0.96 of their members' time alone at 6.6k,
# 51k and 167k multiply-adds per sample (docs/results/speed.md); between, interpolated on a log
# scale. On a GPU (not measured here) and for a member of unknown cost, the values below.
MEMBER_COST_POINTS = ((6_570, 0.11), (50_826, 0.56), (167_178, 0.96))
GPU_MEMBER_COST = 0.11  # a GPU stacks at least as cheaply as a CPU's smallest members
UNKNOWN_MEMBER_COST = 0.5


def cpu_refusal(multiply_adds: int | None, model: str) -> str | None:
    """Why ``stack: auto`` trains a member of ``multiply_adds`` per sample alone on a CPU (None: it
    stacks there). Unknown (the data are not on the driver): MLPs stack, convolutional models not."""
    if multiply_adds is None:
        if model == "mlp":
            return None
        return (f"on a CPU, auto stacks {model} only where its cost per sample is known, and its data are not on "
                "this machine (stack: N forces it)")
    if multiply_adds > CPU_STACK_MAX_MULTIPLY_ADDS:
        return (f"on a CPU, auto stacks members of at most {CPU_STACK_MAX_MULTIPLY_ADDS:,} multiply-adds per sample "
                f"and this model needs {multiply_adds:,} (on a GPU it stacks; stack: N forces it)")
    return None


@dataclass(frozen=True)
class Plan:
    """The trial specs of a grid phase and a line saying how they were stacked."""

    specs: list[dict[str, Any]]
    summary: str


def plan_stacks(study: Study, points: list[dict[str, Any]], part: Mapping[str, Any], slots: int) -> Plan:
    """Group ``points`` (trial specs of one grid phase, run on ``part``'s data) into stacked specs."""
    setting = study.stack
    if setting == "off" or len(points) < 2:
        return Plan(points, "")
    from ..stacked import stack_key, stack_refusal

    groups: dict[str, list[dict[str, Any]]] = {}
    singles: list[dict[str, Any]] = []
    refusals: set[str] = set()
    configs: dict[str, ResolvedRunConfig] = {}
    for spec in points:
        config = RunConfig.from_dict(run_settings(part, spec)).resolved()
        refusal = stack_refusal(config)
        if refusal:
            singles.append(spec)
            refusals.add(refusal)
            continue
        key = stack_key(config)
        groups.setdefault(key, []).append(spec)
        if key not in configs or config.method_options.get("memory", 0) > configs[key].method_options.get("memory", 0):
            configs[key] = config  # a buffer-size grid: the largest buffer sizes the members
    sizes = {key: member_size(config) for key, config in configs.items()}
    if setting == "auto" and study.gpu == 0:  # on a CPU, a large member or a CNN is compute-bound: stacking loses
        for key, (_, multiply_adds) in sizes.items():
            why = cpu_refusal(multiply_adds, configs[key].model)
            if why:
                singles += groups.pop(key)
                refusals.add(why)
    if not groups:
        return Plan(points, f"stacking: none ({'; '.join(sorted(refusals))})")
    per_member = max(sizes[key][0] for key in groups)
    cap, why = member_cap(per_member, study)
    if isinstance(setting, int):
        cap, why = min(cap, setting), f"stack: {setting} in the study" if setting <= cap else why
    priced = [(member_cost(sizes[key][1], study.gpu > 0), group[i:i + cap])
              for key, group in groups.items() for i in range(0, len(group), cap)]
    if setting == "auto":
        priced = balance(priced, len(singles), slots)
    chunks = [chunk for _, chunk in priced]
    specs = [stacked_spec(chunk) if len(chunk) > 1 else chunk[0] for chunk in chunks] + singles
    members = [len(c) for c in chunks]
    size = f"; about {per_member / 2**20:.1f} MiB per member" if math.isfinite(per_member) else ""
    stacks = [m for m in members if m > 1]
    shape = (f"{len(stacks)} stack{'s' if len(stacks) != 1 else ''} of "
             f"{min(stacks) if min(stacks) == max(stacks) else f'{min(stacks)}-{max(stacks)}'} members"
             if stacks else "no stacks")
    summary = (f"stacking: {len(points)} configurations in {len(specs)} trials ({shape}, "
               f"{len(singles) + members.count(1)} alone); at most {cap} members per trial ({why}{size})")
    if refusals:
        summary += f"; not stacked: {'; '.join(sorted(refusals))}"
    return Plan(specs, summary)


def member_cost(multiply_adds: int | None, gpu: bool) -> float:
    """What one more stacked member of ``multiply_adds`` per sample adds to a trial's time, in
    lone runs (MEMBER_COST_POINTS)."""
    if gpu:
        return GPU_MEMBER_COST
    if multiply_adds is None:
        return UNKNOWN_MEMBER_COST
    import numpy as np

    sizes, costs = zip(*MEMBER_COST_POINTS, strict=True)
    return float(np.interp(math.log(multiply_adds), [math.log(n) for n in sizes], costs))  # ends held


def makespan(costs: list[float], slots: int) -> float:
    """The estimated wall time of trials of ``costs`` on ``slots`` workers, each trial started,
    costliest first, on the worker that frees first (longest processing time first)."""
    loads = [0.0] * max(1, slots)
    for cost in sorted(costs, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + cost)
    return max(loads)


Priced = tuple[float, list[dict[str, Any]]]  # (one member's cost in lone runs, the stack's members)


def balance(chunks: list[Priced], singles: int, slots: int) -> list[Priced]:
    """The stacks after halving the costliest one step at a time (up to ``slots`` more trials),
    at the step of the shortest estimated wall time (``makespan``, beside ``singles`` lone
    trials; the fewest trials among equals), costliest first, the order workers take them: idle
    slots get work, and small stacks are not split for nothing. A stack of k members of cost c
    costs 1 + (k - 1) x c lone runs."""
    def cost(chunk: Priced) -> float:
        return 1.0 + chunk[0] * (len(chunk[1]) - 1)

    def span(parts: list[Priced]) -> float:
        return makespan([cost(c) for c in parts] + [1.0] * singles, slots)

    best, shortest = chunks, span(chunks)
    for _ in range(slots):
        costliest = max(range(len(chunks)), key=lambda i: cost(chunks[i]))
        member, stack = chunks[costliest]
        if len(stack) < 2:  # a stack of 2 or more always costs more than a lone run
            break
        half = (len(stack) + 1) // 2
        chunks = chunks[:costliest] + chunks[costliest + 1:] + [(member, stack[:half]), (member, stack[half:])]
        if span(chunks) < shortest - 1e-9:
            best, shortest = chunks, span(chunks)
    return sorted(best, key=cost, reverse=True)


def stacked_spec(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One trial's spec for several members: the method, the first member's seed (its folder's
    name), and every member's own spec."""
    first = members[0]
    return {"method": first["method"], "seed": first["seed"], "options": dict(first.get("options", {})),
            "params": {}, "members": [dict(m) for m in members]}


def member_cap(per_member: float, study: Study) -> tuple[int, str]:
    """(the most members a trial may hold, why), for members of ``per_member`` bytes."""
    if not math.isfinite(per_member):
        return DEFAULT_CAP, "memory not estimated (data not on this machine), default cap"
    budget, where = trial_memory(study)
    cap = max(1, int(MEMORY_SHARE * budget // per_member))
    if cap > MAX_MEMBERS:
        return MAX_MEMBERS, f"the most a stack holds; {MEMORY_SHARE:.0%} of {where} would hold {cap:,}"
    return cap, f"{MEMORY_SHARE:.0%} of {where}"


def member_size(config: ResolvedRunConfig) -> tuple[float, int | None]:
    """(a member's memory in bytes, its multiply-adds per sample): parameter copies, the
    activations a training batch keeps for its backward pass (inputs and every layer's outputs),
    and an evaluation batch's input and largest layer (no gradients: one layer at a time), in
    float32. (NaN, None) where the benchmark cannot be built here (data only on the cluster's nodes)."""
    from ..methods import get_method
    from ..models import build_model

    shape = _benchmark_shape(config.benchmark, json.dumps(config.benchmark_options, sort_keys=True, default=str))
    if shape is None:  # data not on the driver (a remote cluster): no estimate
        return math.nan, None
    input_shape, heads = shape
    model = build_model(config.model, input_shape, heads, config.model_options)
    parameters = sum(p.numel() for p in model.parameters())
    cost = forward_cost(model, input_shape)
    inputs = math.prod(input_shape)
    values = (PARAMETER_COPIES * parameters + ACTIVATION_COPIES * config.batch_size * (inputs + cost.widths)
              + config.eval_batch_size * (inputs + 2 * cost.largest))
    if get_method(config.method).stores_examples:
        # its buffer (at most `memory` rows per class: class-balanced; a reservoir keeps `memory` in
        # all) and two replayed draws of a batch's size (ER's joint batch, DER++'s two, A-GEM's reference)
        values += int(config.method_options.get("memory", 0)) * sum(heads) * inputs
        values += ACTIVATION_COPIES * 2 * config.batch_size * (inputs + cost.widths)
    return 4.0 * values, cost.multiply_adds


@dataclass(frozen=True)
class ForwardCost:
    """Per sample of one forward pass: values all layers output, the largest layer's output, multiply-adds."""

    widths: int
    largest: int
    multiply_adds: int


def forward_cost(model: Any, input_shape: tuple[int, ...]) -> ForwardCost:
    """What one forward pass of ``model`` (through the first head) costs per sample: one pass of a
    single zero sample where the model is (a CPU: 6-30 ms for ResNet-18 at 32-224 pixels; the
    meta device's shape-only pass took 0.8 s of every sweep's start, importing torch._dynamo for
    its decompositions). ``model`` is put in eval mode: pass one you no longer need. A
    convolution counts every channel and position of its output (a CNN's activations dominate
    its memory, and its arithmetic, not its parameters)."""
    import torch
    from torch import nn

    widths, multiply_adds = [], []

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        out = output[0].numel()
        widths.append(out)
        if isinstance(module, nn.Linear):
            multiply_adds.append(module.in_features * module.out_features)
        elif isinstance(module, nn.Conv2d):
            multiply_adds.append(out * module.weight[0].numel())  # per output value: C_in / groups x kh x kw
        elif isinstance(module, nn.ConvTranspose2d):
            multiply_adds.append(inputs[0][0].numel() * module.weight[0].numel())  # per input value: C_out x kh x kw

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        device = next(model.parameters(), torch.zeros(0)).device
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape), device=device), 0)
    finally:
        for handle in handles:
            handle.remove()
    return ForwardCost(sum(widths), max(widths, default=0), sum(multiply_adds))


@functools.lru_cache(maxsize=8)
def _benchmark_shape(name: str, options: str) -> tuple[tuple[int, ...], list[int]] | None:
    """(input shape, classes per task) of a benchmark, built once per planning (MNIST reads files)."""
    from ..benchmarks import build_benchmark

    try:
        benchmark = build_benchmark(name, json.loads(options))
    except Exception:  # noqa: BLE001
        return None
    return tuple(benchmark.input_shape), [task.n_classes for task in benchmark.tasks]


def trial_memory(study: Study) -> tuple[float, str]:
    """The memory one trial may use: its GPU share, or the machine's memory over the trials that
    run at once. Total memory, not what is free now: the plan (which configurations share a
    stack, and so a convolutional member's rounding) must be the same on every run of a study."""
    if study.gpu > 0:
        try:
            import torch

            if torch.cuda.is_available():
                device_bytes = torch.cuda.get_device_properties(0).total_memory
                return device_bytes * min(1.0, study.gpu), \
                    f"{min(1.0, study.gpu):g} of a {device_bytes / 2**30:.0f} GiB GPU"
        except Exception:  # noqa: BLE001
            pass
        return ASSUMED_GPU_BYTES * min(1.0, study.gpu), f"{min(1.0, study.gpu):g} of an assumed 16 GiB GPU"
    total = total_memory()
    at_once = max(1, int((os.cpu_count() or 1) // max(study.cpu, 1e-9)))
    return total / at_once, f"{total / 2**30:.1f} GiB of memory over {at_once} trials at once"


def total_memory() -> float:
    """Bytes of memory of this machine (Linux MemTotal; else its physical pages)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


# auto, in an Optuna phase: each method's search runs at least this many batches one after
# another, so its sampler suggests later batches knowing the earlier ones' results, and each slot
# runs at least this many trials (bench/batched_tpe.py measures what batching costs in quality).
AUTO_ROUNDS = 2
# auto never asks more than this many at once: the largest batch whose quality cost was measured
# small (bench/batched_tpe.py, 24 configurations: K = 6 within the seeds' spread of K = 3 on
# split and permuted digits; K = 12 0.016 below K = 6 on permuted digits, about one std)
AUTO_MAX_BATCH = 6


def optuna_batch(study: Study, method: MethodSearch, part: Mapping[str, Any], slots: int, left: int,
                 sharing: int = 1) -> tuple[int, str]:
    """(how many configurations an Optuna phase of ``method`` suggests at once and trains as one
    stacked trial, why): 1 where stacking is off, a searched value changes what members share, or
    the model is refused. (An ASHA scheduler stops each member on its own: rungs.py.)

    ``auto``: the phase's ``sharing`` methods share its ``slots`` (their searches are asked in
    turn), so a method needs enough batches for its share of the slots to run ``AUTO_ROUNDS`` each
    (``slots x AUTO_ROUNDS / sharing``), and never fewer than ``AUTO_ROUNDS``: one method on 2
    slots with 8 configurations asks 2 at a time; six methods on 2 slots ask 4 at a time (12
    trials for 2 slots, 2 batches per method), where 2 at a time made 24 trials of 0.4 s, each
    paying Ray Tune's ~0.2 s between trials and the trial's set-up. Never more than
    ``AUTO_MAX_BATCH`` at a time (six methods' 24 configurations on 2 slots: 6, not 12)."""
    if study.stack == "off" or left < 2:
        return 1, ""
    from ..methods import get_method
    from ..stacked import MEMBER_SETTINGS, stack_refusal

    stackable = {*MEMBER_SETTINGS, *get_method(method.method).stackable_options}
    apart = sorted(set(method.space) - stackable)
    if apart:
        return 1, f"not batched: a stack's members may differ only in {', '.join(sorted(stackable))}, and " \
                  f"{', '.join(apart)} is searched"
    memory = method.space.get("memory")  # a buffer-size grid: the largest buffer sizes the members
    largest = {} if memory is None else {"memory": max(memory.values) if memory.kind == "values" else memory.high}
    config = RunConfig.from_dict(run_settings(part, study.trial_spec(method, largest, study.seeds[0]))).resolved()
    refusal = stack_refusal(config)
    if refusal:
        return 1, f"not batched: {refusal}"
    per_member, multiply_adds = member_size(config)
    why_alone = cpu_refusal(multiply_adds, config.model) if study.stack == "auto" and study.gpu == 0 else None
    if why_alone:
        return 1, f"not batched: {why_alone}"
    cap, why = member_cap(per_member, study)
    if isinstance(study.stack, int):
        size, why = min(cap, study.stack), f"stack: {study.stack} in the study" if study.stack <= cap else why
    else:
        rounds = max(AUTO_ROUNDS, math.ceil(slots * AUTO_ROUNDS / max(1, sharing)))
        shared = f", shared by {sharing} methods" if sharing > 1 else ""
        size, why = min(cap, AUTO_MAX_BATCH, max(1, math.ceil(left / rounds))), \
            f"auto: {left} configurations over {slots} slot(s){shared}, at least {AUTO_ROUNDS} batches each, " \
            f"at most {AUTO_MAX_BATCH} at a time"
    if size < 2:
        return 1, f"not batched ({why})"
    return size, (f"batched search: {left} configurations, {size} suggested at a time (constant-liar TPE) and "
                  f"trained as one stacked trial ({why})")

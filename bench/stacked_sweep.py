"""Stacked λ grids (issue 14) against one configuration per trial, on this machine.

Two measurements, each printed with what it measured:

* ``sweep`` (default): a study run twice through Ray Tune, ``stack: auto`` then ``stack: off``
  (the main job by default; Ray started before either is timed), wall time of each, their
  ratio, and how far the two trials tables are apart per configuration (status and every metric).
* ``engine``: one method's λ grid × seeds on a benchmark (split MNIST 512-256 by default), or
  a replay method's buffer-size grid × seeds (``--method er``: ``memory`` per class), as one
  stack, against the same configurations trained one after another in this process
  (``--separate N`` trains only the first N alone and scales their time to all of them,
  which the output says).

    python bench/stacked_sweep.py sweep --study studies/lambda_robustness.yaml
    SPP_DATA_ROOT=../shared/data python bench/stacked_sweep.py engine --benchmark split_mnist --epochs 1
    python bench/stacked_sweep.py engine --benchmark split_digits --epochs 5 --hidden 256,128 --separate 6
    python bench/stacked_sweep.py engine --benchmark split_digits --method er --epochs 10   # a buffer-size grid
    python bench/stacked_sweep.py sweep --study studies/replay_memory.yaml                 # the same through Ray

* ``cnn``: the same for VGG-9 (or ResNet-18) on synthetic 3x32x32 tasks (no dataset needed), or
  the continual VAE on its digits (``--model vae``; ``--per-task 0`` keeps every image):
  K members as one stack (grouped convolutions, models/batched.py) against the same K trained one
  after another, and the largest parameter gap between each member and its separate run.

    python bench/stacked_sweep.py cnn --members 8 --channels 8,16,16 --fc 32 --per-task 256
    python bench/stacked_sweep.py cnn --members 8 --device cuda          # the paper's VGG-9 widths
    python bench/stacked_sweep.py cnn --model vae --members 9 --per-task 0 --epochs 5   # the continual VAE
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAMBDAS = [0.01, 0.03, 0.1, 0.3, 0.5, 1, 2, 4, 6, 8, 12, 30, 100, 300, 1000, 3000, 10000]
MEMORIES = [1, 2, 5, 10, 20, 50, 100]  # a replay method's buffer sizes (studies/replay_memory.yaml's grid)
KEY = ["phase", "method", "seed", "config", "penalty_step"]


def bench_sweep(args: argparse.Namespace) -> None:
    import pandas as pd

    from analysis.load import load_trials
    from spp_sweep.sweep.connection import connect
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import load_study

    study = load_study(args.study)
    connect(None, quiet=True)  # Ray started before either clock: the first sweep would pay it alone
    tables, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as storage:
        for setting in ("auto", "off"):
            run = dataclasses.replace(study, stack=setting, storage=storage, name=f"{study.name}-{setting}")
            start = time.perf_counter()
            outcome = run_sweep(run, SweepOptions(verbose=0))
            seconds[setting] = time.perf_counter() - start
            tables[setting] = load_trials(outcome.root)
            print(f"stack {setting}: {len(tables[setting])} configurations in {seconds[setting]:.1f} s", flush=True)
    merged = pd.merge(tables["auto"], tables["off"], on=KEY, suffixes=("_stacked", "_alone"))
    print(f"{len(merged)} configurations matched of {len(tables['off'])}")
    same_status = (merged["status_stacked"] == merged["status_alone"])
    print(f"same status: {same_status.sum()} of {len(merged)}")
    for metric in ("acc", "bwt", "fwt", "val_acc"):
        a, b = merged[f"{metric}_stacked"], merged[f"{metric}_alone"]
        both = a.notna() & b.notna()
        gap = (a[both] - b[both]).abs()
        print(f"{metric}: max |stacked - alone| = {gap.max() if len(gap) else math.nan:.3g} over {both.sum()} "
              f"finished pairs; identical in {(gap == 0).sum()}")
    print(f"speed-up (wall, whole sweep): {seconds['off'] / seconds['auto']:.2f}x "
          f"({seconds['off']:.1f} s alone / {seconds['auto']:.1f} s stacked)")


def bench_engine(args: argparse.Namespace) -> None:
    import torch

    from spp_sweep.config import RunConfig
    from spp_sweep.engine import run_experiment
    from spp_sweep.methods import get_method
    from spp_sweep.stacked import StackedExperiment, run_stacked

    torch.set_num_threads(args.threads)
    model = {"model_options": {"hidden": [int(h) for h in args.hidden.split(",")]}} if args.hidden else {}
    replay = get_method(args.method).stores_examples
    grid = [{"memory": m} for m in MEMORIES] if replay else \
        [{"lam": float(lam), "penalty_step": args.penalty_step} for lam in LAMBDAS]
    configs = [RunConfig(method=args.method, benchmark=args.benchmark, epochs=args.epochs, seed=seed,
                         threads=args.threads, device=args.device, **model, method_options=options)
               for options in grid for seed in range(args.seeds)]

    parameters = sum(p.numel() for p in StackedExperiment(configs[:1]).model.parameters())
    start = time.perf_counter()
    stacked = run_stacked(configs)
    stacked_s = time.perf_counter() - start
    alone = configs if args.separate in (0, None) else configs[:args.separate]
    start = time.perf_counter()
    separate = [run_experiment(c) for c in alone]
    separate_s = time.perf_counter() - start
    scaled = separate_s * len(configs) / len(alone)
    gap = max((abs(a - b) for s, r in zip(stacked, separate) for x, y in zip(s.accuracy_matrix, r.accuracy_matrix)
               for a, b in zip(x, y)), default=math.nan)
    print(f"{args.method} on {args.benchmark} ({parameters:,} parameters per member), "
          f"{len(grid)} {'buffer sizes' if replay else 'λ'} x {args.seeds} seeds = {len(configs)} members, "
          f"{args.epochs} epoch(s)/task, {args.threads} thread(s), {args.device}")
    print(f"stacked: {stacked_s:.1f} s ({len(configs) / stacked_s:.2f} members/s); "
          f"{sum(r.status == 'diverged' for r in stacked)} members diverged")
    what = "measured" if len(alone) == len(configs) else f"{len(alone)} measured ({separate_s:.1f} s), scaled"
    print(f"one after another: {scaled:.1f} s ({what}); speed-up {scaled / stacked_s:.1f}x")
    print(f"largest accuracy gap, stacked vs alone, over the {len(alone)} compared runs: {gap:.3g}")


def bench_cnn(args: argparse.Namespace) -> None:
    import torch
    from vgg9_throughput import synthetic_sequence

    from spp_sweep.config import RunConfig
    from spp_sweep.engine import Experiment
    from spp_sweep.stacked import StackedExperiment

    torch.set_num_threads(args.threads)
    options = ({"channels": [int(c) for c in args.channels.split(",")], "fc": args.fc}
               if args.model == "vgg9" and args.channels else {})
    if args.model == "vae":  # the continual VAE on its own benchmark (8x8 digits bundled; mnist_domains: real MNIST)
        from spp_sweep.benchmarks import build_benchmark

        benchmark, train = args.vae_benchmark, {}
        data = build_benchmark(benchmark, {"max_train_per_task": args.per_task} if args.per_task else {})
    else:
        benchmark, train = "visual_sequence", {"batch_size": args.batch_size, "validation": 0.0}
        data = synthetic_sequence(args.per_task, n_tasks=args.tasks)
    configs = [RunConfig(method=args.method, benchmark=benchmark, model=args.model, epochs=args.epochs,
                         seed=k // len(LAMBDAS), threads=args.threads, device=args.device, model_options=options,
                         method_options={"lam": float(LAMBDAS[k % len(LAMBDAS)])}, **train)
               for k in range(args.members)]

    def synchronise() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    Experiment(configs[0], benchmark=data).train_task(0)  # warm-up: kernels, allocator
    synchronise()
    start = time.perf_counter()
    stack = StackedExperiment(configs, benchmark=data)
    stack.run()
    synchronise()
    stacked_s = time.perf_counter() - start
    start, gap = time.perf_counter(), 0.0
    states = []
    for config in configs:
        experiment = Experiment(config, benchmark=data)
        experiment.run()
        states.append(experiment.model.state_dict())
    synchronise()
    separate_s = time.perf_counter() - start
    for k, state in enumerate(states):
        member = stack.model.member_state(k)
        member_gap = max(float((member[n].double() - t.double()).abs().max()) for n, t in state.items())
        if args.verbose:
            print(f"member {k} (λ {configs[k].method_options['lam']}): largest gap {member_gap:.3g}")
        gap = max(gap, member_gap)
    parameters = sum(p.numel() for p in Experiment(configs[0], benchmark=data).model.parameters())
    what = (f"{benchmark} ({len(data.tasks[0].y_train)} training images per task)" if args.model == "vae" else
            f"{args.tasks} synthetic tasks x {args.per_task} images of 3x32x32, batch {args.batch_size}")
    print(f"{args.method}, {args.model} ({parameters:,} parameters per member), {args.members} members (λ grid x "
          f"seeds), {what}, {args.epochs} epoch(s), {args.threads} thread(s), {args.device}")
    print(f"stacked: {stacked_s:.1f} s; one after another: {separate_s:.1f} s; "
          f"speed-up {separate_s / stacked_s:.2f}x")
    print(f"largest parameter/statistic gap, member vs its separate run: {gap:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what")
    sweep = sub.add_parser("sweep", help="a study stacked and not, through Ray Tune")
    sweep.add_argument("--study", default="studies/lambda_robustness.yaml")
    engine = sub.add_parser("engine", help="a λ (or buffer-size) grid x seeds as one stack vs one after another")
    engine.add_argument("--benchmark", default="split_mnist")
    engine.add_argument("--method", default="spp")
    engine.add_argument("--penalty-step", default="explicit")
    engine.add_argument("--epochs", type=int, default=1)
    engine.add_argument("--hidden", help="MLP widths, e.g. 512,256 (default: the benchmark's)")
    engine.add_argument("--seeds", type=int, default=3)
    engine.add_argument("--threads", type=int, default=1)
    engine.add_argument("--device", default="cpu")
    engine.add_argument("--separate", type=int, default=0, help="train only the first N alone and scale (0: all)")
    cnn = sub.add_parser("cnn", help="a CNN λ grid as one stack vs one after another (synthetic images)")
    cnn.add_argument("--model", default="vgg9", choices=("vgg9", "resnet18", "vae"))
    cnn.add_argument("--vae-benchmark", default="digit_domains", help="the VAE's benchmark (or mnist_domains)")
    cnn.add_argument("--method", default="spp")
    cnn.add_argument("--members", type=int, default=8)
    cnn.add_argument("--channels", help="VGG-9 widths, e.g. 8,16,16 (default: the paper's 64,128,256)")
    cnn.add_argument("--fc", type=int, default=512)
    cnn.add_argument("--per-task", type=int, default=256)
    cnn.add_argument("--tasks", type=int, default=2)
    cnn.add_argument("--epochs", type=int, default=1)
    cnn.add_argument("--batch-size", type=int, default=64)
    cnn.add_argument("--threads", type=int, default=1)
    cnn.add_argument("--device", default="cpu")
    cnn.add_argument("--verbose", action="store_true", help="each member's gap")
    args = parser.parse_args()
    if args.what == "engine":
        bench_engine(args)
    elif args.what == "cnn":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        bench_cnn(args)
    else:
        if args.what is None:
            args = parser.parse_args(["sweep", *sys.argv[1:]])
        bench_sweep(args)


if __name__ == "__main__":
    main()

"""The field's reference protocol on split MNIST, timed: one run of each method at one thread.

The protocol of van de Ven, Tuytelaars & Tolias ("Three types of incremental learning", 2022) as
``studies/three_scenarios_<scenario>.yaml`` fixes it (784-400-400 ReLU MLP, Adam at lr 0.001,
batch 128, ``iterations`` per task, 5 tasks, the scenario's output layer, 100 stored samples per
class for replay); each method with its study options and the first value of each searched one.
Printed per method, each measured in this one process:

* ``seconds``: one whole run (training, every evaluation, importance passes), ``--threads`` threads;
* ``GFLOP``: the matrix-multiply FLOPs of that run (forward and backward; ``torch.utils.flop_counter``
  over two short runs of the same configuration, ``COUNTED`` iterations per task, extrapolated
  linearly to ``iterations``: a run's FLOPs are a fixed part plus a part per iteration);
* ``share``: GFLOP / seconds against this CPU's matmul rate at the same threads, measured here
  (the best of square matrix products of a few sizes): how much of the arithmetic the CPU can do
  the run turns into training (the rest is elementwise work, Python and the framework).

Then, for the same MLP: K members of one method as one stack against the same K alone
(``--stack-method``, its study grid as members, ``--stack-iterations`` per task): on a CPU a
784-400-400 member is compute-bound, and a stack cannot beat its members' arithmetic.

    SPP_DATA_ROOT=../shared/data python bench/reference_protocol.py --scenario class --out speed.csv
    SPP_DATA_ROOT=../shared/data python bench/reference_protocol.py --iterations 50 --methods finetune,er
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spp_sweep.config import RunConfig  # noqa: E402
from spp_sweep.engine import Experiment  # noqa: E402
from spp_sweep.stacked import StackedExperiment  # noqa: E402
from spp_sweep.sweep.study import Study, load_study, run_settings  # noqa: E402

COUNTED = (10, 20)  # iterations per task of the two runs whose FLOPs are counted
SCENARIOS = {"task": "three_scenarios_task.yaml", "domain": "three_scenarios_domain.yaml",
             "class": "three_scenarios_class.yaml"}


def configs(study: Study, iterations: int, threads: int, seed: int = 0) -> dict[str, list[RunConfig]]:
    """Per method of the study, one configuration per point of its grid (the first is timed)."""
    found = {}
    for method in study.methods:
        specs = [study.trial_spec(method, point, seed) for point in method.grid_points()]
        found[method.method] = [RunConfig.from_dict({**run_settings(study.study_part(), spec),
                                                     "iterations": iterations, "threads": threads}) for spec in specs]
    return found


def matmul_rate(threads: int) -> float:
    """This CPU's matrix-multiply rate at ``threads`` threads, in GFLOP/s: the best of square products."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        repeats, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            a @ b
            repeats += 1
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def counted_flops(config: RunConfig, iterations: int) -> float:
    """The run's matmul FLOPs at ``iterations`` per task, extrapolated from two counted short runs."""
    totals = []
    for short in COUNTED:
        counter = FlopCounterMode(display=False)
        with counter:
            Experiment(RunConfig.from_dict({**config.to_dict(), "iterations": short})).run()
        totals.append(counter.get_total_flops())
    per_iteration = (totals[1] - totals[0]) / (COUNTED[1] - COUNTED[0])
    return totals[0] + per_iteration * (iterations - COUNTED[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="class")
    parser.add_argument("--iterations", type=int, default=2000, help="per task (the reference's: 2000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", help="comma-separated (default: every method of the study)")
    parser.add_argument("--data-root", default=os.environ.get("SPP_DATA_ROOT"), help="real MNIST (or $SPP_DATA_ROOT)")
    parser.add_argument("--stack-method", default="spp", help="the method whose grid is stacked ('' skips)")
    parser.add_argument("--stack-iterations", type=int, default=200)
    parser.add_argument("--out", help="write the per-method rows here as CSV")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("real MNIST is needed: --data-root DIR or $SPP_DATA_ROOT")
    study = load_study(Path(__file__).resolve().parents[1] / "studies" / SCENARIOS[args.scenario])
    study = study.with_overrides(data_root=args.data_root)
    runs = configs(study, args.iterations, args.threads)
    chosen = args.methods.split(",") if args.methods else list(runs)
    rate = matmul_rate(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"{args.threads} thread(s); matmul rate {rate:.1f} GFLOP/s (best square product)")
    print(f"{study.name}: {args.iterations} iterations per task, batch {runs[chosen[0]][0].batch_size}")
    rows = []
    for method in chosen:
        config = runs[method][0]
        start = time.perf_counter()
        result = Experiment(config).run()
        seconds = time.perf_counter() - start
        flops = counted_flops(config, args.iterations)
        rows.append({"method": method, "options": config.method_options, "seconds": round(seconds, 2),
                     "gflop": round(flops / 1e9, 1), "gflop_per_s": round(flops / 1e9 / seconds, 2),
                     "matmul_share": round(flops / 1e9 / seconds / rate, 3), "acc": round(result.metrics["acc"], 4)})
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.stack_method:
        members = [RunConfig.from_dict({**c.to_dict(), "iterations": args.stack_iterations})
                   for c in runs[args.stack_method]]
        start = time.perf_counter()
        StackedExperiment(members).run()
        stacked = time.perf_counter() - start
        start = time.perf_counter()
        for member in members:
            Experiment(member).run()
        alone = time.perf_counter() - start
        print(f"stacking {len(members)} {args.stack_method} members ({args.stack_iterations} iterations per task): "
              f"{stacked:.1f} s stacked, {alone:.1f} s one after another: {alone / stacked:.2f}x")


if __name__ == "__main__":
    main()

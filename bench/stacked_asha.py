"""Early stopping inside a stack: ended members frozen in the model against repacked out of it.

A stack of K configurations (a λ × lr grid of one method) trains under asynchronous successive
halving on the task index (sweep/rungs.py's ``Rungs``, the record Ray Tune's ASHA keeps, driven
here without Ray: every member asks it after every task, as a stacked trial does). The same
stack runs twice per round, alternating: once keeping the stopped members frozen in the model
(``StackedExperiment(repack=False)``, the code before repacking), once dropping them before the
next task (``repack=True``, the default). It prints each run's wall time, the member-tasks the
model computed, the ratio, and whether the two runs' results agree (they must be identical: the
decisions see the same scores).

    python bench/stacked_asha.py                                   # permuted digits, 256-128 MLP
    python bench/stacked_asha.py --members 12 --reduction-factor 3 --rounds 3
    SPP_DATA_ROOT=../shared/data python bench/stacked_asha.py --benchmark permuted_mnist --epochs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def configurations(args: argparse.Namespace) -> list:
    import numpy as np

    from spp_sweep.config import RunConfig

    lams = np.geomspace(args.lam_range[0], args.lam_range[1], args.members)
    lrs = [0.05, 0.1, 0.2]
    options = {"hidden": [int(h) for h in args.hidden.split(",")]} if args.hidden else {}
    return [RunConfig(method=args.method, benchmark=args.benchmark, epochs=args.epochs, seed=k, threads=args.threads,
                      lr=lrs[k % len(lrs)], model_options=options, validation=0.2,
                      benchmark_options={"n_tasks": args.tasks}, method_options={"lam": float(lam)})
            for k, lam in enumerate(lams)]


def run_once(configs: list, benchmark, args: argparse.Namespace, repack: bool) -> tuple[float, int, list]:
    from spp_sweep.stacked import StackedExperiment
    from spp_sweep.sweep.rungs import Rungs

    rungs = Rungs(args.grace_period, args.tasks, args.reduction_factor)
    computed = [0]

    def on_task_end(task: int, stack: StackedExperiment) -> None:
        computed[0] += stack.size
        for k, member in enumerate(stack.members):  # the trainable's question, in member order
            if member.status == "running" and task + 1 < args.tasks:
                validation = [row[: task + 1] for row in member.val_rows]
                score = sum(validation[-1]) / (task + 1)  # ACC on the tasks seen, validation split
                if rungs.decide(str(k), task + 1, score):
                    member.stop()

    start = time.perf_counter()
    results = StackedExperiment(configs, benchmark=benchmark, repack=repack).run(on_task_end=on_task_end)
    return time.perf_counter() - start, computed[0], results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="permuted_digits")
    parser.add_argument("--method", default="spp")
    parser.add_argument("--members", type=int, default=12)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", default="256,128", help="MLP widths ('' for the benchmark's default)")
    parser.add_argument("--lam-range", type=float, nargs=2, default=(0.01, 1000.0))
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    from spp_sweep.benchmarks import build_benchmark

    torch.set_num_threads(args.threads)
    configs = configurations(args)
    benchmark = build_benchmark(args.benchmark, {"n_tasks": args.tasks})
    seconds: dict[bool, list[float]] = {False: [], True: []}
    computed, outcomes = {}, {}
    for _ in range(args.rounds):
        for repack in (False, True):
            wall, computed[repack], outcomes[repack] = run_once(configs, benchmark, args, repack)
            seconds[repack].append(wall)
    frozen, repacked = outcomes[False], outcomes[True]
    same = all(a.status == b.status and a.accuracy_matrix == b.accuracy_matrix for a, b in zip(frozen, repacked))
    statuses = [r.status for r in repacked]
    print(f"{args.method} on {args.benchmark} ({args.tasks} tasks, {args.epochs} epoch(s) each, MLP {args.hidden}), "
          f"{len(configs)} members as one stack, ASHA grace {args.grace_period} reduction {args.reduction_factor:g}, "
          f"{args.threads} thread(s), {args.rounds} round(s) alternating")
    print(f"ended: {statuses.count('stopped')} stopped, {statuses.count('diverged')} diverged, "
          f"{statuses.count('finished')} finished all {args.tasks} tasks")
    for repack, label in ((False, "ended members frozen in the model"), (True, "ended members repacked out")):
        print(f"{label}: {', '.join(f'{s:.2f}' for s in seconds[repack])} s "
              f"(median {statistics.median(seconds[repack]):.2f} s), {computed[repack]} member-tasks computed")
    ratio = statistics.median(seconds[False]) / statistics.median(seconds[True])
    print(f"speed-up from repacking: {ratio:.2f}x (member-tasks {computed[False] / computed[True]:.2f}x fewer)")
    print(f"results identical (status, every accuracy matrix): {same}")


if __name__ == "__main__":
    main()

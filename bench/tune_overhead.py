"""Ray Tune's overhead: N trials through a sweep against the same N trials back to back.

Both sides run the same configurations (SPP over N values of λ) with one thread each and
one trial at a time, so the ratio is what Tune itself costs: trial start-up, reporting
and a checkpoint after every task (target <= 1.10 at trials of a few seconds). Ray's own
start-up is timed separately. Then the sweep again with as many concurrent trials as CPUs,
and, on a machine with a GPU, trials per minute with 1, 2, 4 and 8 trials sharing it.

    python bench/tune_overhead.py                       # split digits, 8 trials
    python bench/tune_overhead.py --trials 16 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import run_experiment
from spp_sweep.sweep.connection import connect
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import parse_study


def study(storage: str, name: str, lams: list[float], epochs: int, benchmark: str, cpu: float, gpu: float,
          concurrent: int | None) -> object:
    return parse_study({
        "name": name, "benchmark": benchmark, "fixed": {"epochs": epochs},
        "methods": {"spp": {"space": {"lam": lams}}}, "seeds": 1, "max_concurrent": concurrent,
        "resources": {"cpu": cpu, "gpu": gpu}, "storage": storage,
    })


def timed_sweep(storage: str, name: str, **kwargs) -> float:
    start = time.perf_counter()
    run_sweep(study(storage, name, **kwargs), SweepOptions(verbose=0))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20, help="epochs per task (20: ~2-3 s per trial)")
    parser.add_argument("--benchmark", default="split_digits")
    args = parser.parse_args()
    lams = [0.5 * (i + 1) for i in range(args.trials)]
    storage = tempfile.mkdtemp(prefix="tune-bench-")

    start = time.perf_counter()
    for lam in lams:
        run_experiment(RunConfig(method="spp", benchmark=args.benchmark, epochs=args.epochs, threads=1,
                                 method_options={"lam": lam}))
    serial = time.perf_counter() - start

    start = time.perf_counter()
    connect(None)
    ray_start = time.perf_counter() - start
    common = dict(lams=lams, epochs=args.epochs, benchmark=args.benchmark, cpu=1, gpu=0)
    tuned = timed_sweep(storage, "one_at_a_time", concurrent=1, **common)
    cpus = os.cpu_count() or 1
    parallel = timed_sweep(storage, "parallel", concurrent=None, **common)

    print(f"{args.trials} SPP trials on {args.benchmark}, {args.epochs} epochs per task, 1 thread each")
    print(f"  back to back in one process : {serial:7.1f} s ({serial / args.trials:.2f} s per trial)")
    print(f"  Ray start-up (once)         : {ray_start:7.1f} s")
    print(f"  Ray Tune, 1 at a time       : {tuned:7.1f} s  ratio {tuned / serial:.2f}")
    print(f"  Ray Tune, up to {cpus} at a time : {parallel:7.1f} s  speed-up {serial / parallel:.2f}x")
    if torch.cuda.is_available():
        for share in (1, 2, 4, 8):
            seconds = timed_sweep(storage, f"gpu{share}", concurrent=None,
                                  **{**common, "cpu": max(1, cpus // share) if share > 1 else 1, "gpu": 1 / share})
            print(f"  GPU shared by {share} trials    : {seconds:7.1f} s  {60 * args.trials / seconds:.1f} trials/min")
    else:
        print("  no CUDA GPU here: GPU-sharing numbers skipped")


if __name__ == "__main__":
    main()

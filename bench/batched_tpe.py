"""What batching the Bayesian search costs in quality, and what it saves in time.

An Optuna phase with ``stack:`` asks TPE for K configurations at once (constant liar) and trains
them as one stacked model (spp_sweep/sweep/optuna_search.py). TPE then learns from fewer
rounds, so for the same number of configurations it may find a worse one. This script runs the
same search, without Ray, one configuration at a time (K = 1: ask, train, tell) and in batches
(K = 3, 6: ask K, train them stacked, tell K), over several sampler seeds on two embedded
benchmarks, and prints:

* the best validation ACC found after n configurations (mean ± std over sampler seeds), and
  the test ACC of the configuration chosen at the end on validation;
* for each K, how many configurations it needs to match K = 1's best after ``--match-at`` (means);
* wall time per configuration of each K, and the ratio to K = 1 (the stacking gain).

    python bench/batched_tpe.py                       # split_digits and permuted_digits, 5 seeds
    python bench/batched_tpe.py --seeds 3 --budget 18 --batches 1,3
    python bench/batched_tpe.py --budget 48 --match-at 24   # how many configurations batching needs

The search space is SPP's λ (log-uniform 0.01–10⁴) and lr (log-uniform 10⁻³–0.5), the
explicit step, one epoch per task, 20% validation: the space `spp-sweep recommend` searches.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import optuna
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.stacked import StackedExperiment

SPACE = {"lam": optuna.distributions.FloatDistribution(0.01, 1e4, log=True),
         "lr": optuna.distributions.FloatDistribution(1e-3, 0.5, log=True)}


def config(benchmark: str, params: dict[str, float], epochs: int) -> RunConfig:
    return RunConfig.from_dict({"method": "spp", "benchmark": benchmark, "epochs": epochs, "validation": 0.2,
                                "seed": 0, "lr": params["lr"], "threads": 1,
                                "method_options": {"lam": params["lam"]}})


def score(result) -> tuple[float, float]:
    """(validation ACC, test ACC); a diverged run scores -1, as in a sweep."""
    if result.status != "finished" or result.validation_metrics is None:
        return -1.0, -1.0
    return float(result.validation_metrics["acc"]), float(result.metrics["acc"])


def search(benchmark: str, batch: int, sampler_seed: int, budget: int, epochs: int) -> dict[str, object]:
    """One TPE search of ``budget`` configurations, ``batch`` at a time."""
    startup = min(10, max(3, budget // 3))  # as the sweep's Optuna phases (runner._optuna_searcher)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=startup, constant_liar=batch > 1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    found: list[tuple[float, float]] = []
    started = time.perf_counter()
    while len(found) < budget:
        asked = [study.ask(SPACE) for _ in range(min(batch, budget - len(found)))]
        configs = [config(benchmark, trial.params, epochs) for trial in asked]
        results = StackedExperiment(configs).run() if len(configs) > 1 else [Experiment(configs[0]).run()]
        for trial, result in zip(asked, results):
            val, test = score(result)
            study.tell(trial, val)
            found.append((val, test))
    seconds = time.perf_counter() - started
    best_val = np.maximum.accumulate([v for v, _ in found])
    chosen = max(range(len(found)), key=lambda i: found[i][0])
    return {"best_val": best_val, "test_of_chosen": found[chosen][1], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", default="split_digits,permuted_digits")
    parser.add_argument("--batches", default="1,3,6", help="K values to compare (1: one configuration at a time)")
    parser.add_argument("--seeds", type=int, default=5, help="sampler seeds")
    parser.add_argument("--budget", type=int, default=24, help="configurations per search")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--match-at", type=int, help="K=1's best after this many configurations is what the "
                        "others must match (default: the budget); with a larger --budget, how many they need")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    batches = [int(k) for k in args.batches.split(",")]
    checkpoints = sorted({n for n in (args.budget // 4, args.budget // 2, 3 * args.budget // 4, args.budget) if n})
    print(f"TPE over SPP's λ and lr, {args.budget} configurations, {args.seeds} sampler seeds, "
          f"{args.epochs} epoch(s) per task, one CPU thread")
    for benchmark in args.benchmarks.split(","):
        runs = {k: [search(benchmark, k, seed, args.budget, args.epochs) for seed in range(args.seeds)]
                for k in batches}
        print(f"\n{benchmark}: best validation ACC after n configurations (mean ± std over sampler seeds)")
        print(f"{'K':>3} " + " ".join(f"{'n=' + str(n):>15}" for n in checkpoints)
              + f" {'test ACC of chosen':>19} {'s/config':>9} {'speed vs K=1':>13} {'n to match':>11}")
        print(f"    (n to match: configurations each K needs, on the mean curve, to reach K={batches[0]}'s best "
              f"after {args.match_at or args.budget})")
        match_at = args.match_at or args.budget
        reference = float(np.mean([r["best_val"][match_at - 1] for r in runs[batches[0]]]))
        base_rate = np.mean([r["seconds"] for r in runs[batches[0]]]) / args.budget
        for k in batches:
            curves = np.array([r["best_val"] for r in runs[k]])
            cells = " ".join(f"{curves[:, n - 1].mean():.4f}±{curves[:, n - 1].std():.4f}" for n in checkpoints)
            tests = np.array([r["test_of_chosen"] for r in runs[k]])
            rate = np.mean([r["seconds"] for r in runs[k]]) / args.budget
            mean_curve = curves.mean(axis=0)
            reached = next((n + 1 for n, v in enumerate(mean_curve) if v >= reference), math.inf)
            match = f"{reached}" if math.isfinite(reached) else f">{args.budget}"
            print(f"{k:>3} {cells} {tests.mean():>11.4f}±{tests.std():.4f} {rate:>9.3f} {base_rate / rate:>12.2f}x "
                  f"{match:>11}")


if __name__ == "__main__":
    main()

"""Where a sweep phase's fixed cost goes: one Ray Tune experiment after another, each of two
trials that do nothing but what every real trial does first.

Each phase is a fresh ``Tuner.fit()`` (as every phase of a sweep is, runner.py), two trials of
1 CPU that import the trainable's module (torch, Ray Tune, the engine), then train the same
tiny run twice (SPP on split digits, one epoch): the first run's excess over the second is the
process's warm-up (lazy imports: ``torch.optim`` imported ``torch._dynamo`` on first use, as
did torchvision for an MLP stack, until the engine stopped using either; ``--torch-optim``
builds one ``torch.optim.SGD`` first to show that cost). For each trial it prints, relative to
the phase's start: when its worker process was created (negative: Ray had prestarted it), when
the trainable was entered, the imports' seconds, the warm-up, and the whole phase.
``--preload`` asks Ray to import those modules in every worker process it starts
(``RAY_preload_python_modules``), so that a prestarted worker has them before a phase needs it.

    python bench/phase_cost.py                  # 3 phases
    python bench/phase_cost.py --preload
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from typing import Any

PRELOAD = "torch,torch._dynamo,spp_sweep.sweep.trainable"


def trainable(config: dict[str, Any]) -> None:
    """What every trial of a sweep does before its first step, timed."""
    import psutil

    entered = time.time()
    import spp_sweep.sweep.trainable  # noqa: F401 - the trainable's module, as Ray imports it
    imported = time.time()
    import torch
    from ray import tune

    from spp_sweep.config import RunConfig
    from spp_sweep.engine import Experiment

    optim_started = time.time()
    if config["torch_optim"]:
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    optim = time.time() - optim_started
    runs = []
    for _ in range(2):
        start = time.time()
        Experiment(RunConfig.from_dict({"benchmark": "split_digits", "method": "spp", "epochs": 1,
                                        "threads": 1}).resolved()).run()
        runs.append(time.time() - start)
    tune.report({"created": psutil.Process().create_time(), "entered": entered, "imported": imported,
                 "optim": optim, "first": runs[0], "second": runs[1], "finished_at": time.time(),
                 "worker": os.getpid()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--preload", action="store_true", help=f"RAY_preload_python_modules={PRELOAD}")
    parser.add_argument("--torch-optim", action="store_true", help="build a torch.optim.SGD before the runs")
    args = parser.parse_args()
    if args.preload:
        os.environ["RAY_preload_python_modules"] = PRELOAD
    started = time.time()
    import ray
    from ray import tune

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    print(f"ray.init: {time.time() - started:.2f} s (preload: {'on' if args.preload else 'off'})")
    storage = tempfile.mkdtemp(prefix="phase_cost_")
    for phase in range(args.phases):
        t0 = time.time()
        space = {"x": tune.grid_search([1, 2]), "torch_optim": args.torch_optim}
        tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=space,
                           tune_config=tune.TuneConfig(reuse_actors=True),
                           run_config=tune.RunConfig(name=f"phase{phase}", storage_path=storage, verbose=0))
        results = tuner.fit()
        whole = time.time() - t0
        for result in (results[i] for i in range(len(results))):
            m = result.metrics or {}
            print(f"phase {phase}: worker created {m['created'] - t0:+.2f} s, trainable entered "
                  f"{m['entered'] - t0:+.2f} s, imports {m['imported'] - m['entered']:.2f} s, "
                  + (f"torch.optim.SGD {m['optim']:.2f} s, " if args.torch_optim else "") + f"runs {m['first']:.2f} s "
                  f"then {m['second']:.2f} s (warm-up {m['first'] - m['second']:.2f} s), reported "
                  f"{m['finished_at'] - t0:+.2f} s (worker {m['worker']})")
        print(f"phase {phase}: whole phase {whole:.2f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()

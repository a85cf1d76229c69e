"""Ray's start with the driver's later imports after it, or beside it (spp_sweep/sweep/preload.py).

Each run is a fresh interpreter that imports what the CLI has imported when it connects (the
runner: torch, Ray Tune), then times ``ray.init`` of a new local instance and the imports a
``recommend`` driver does once Ray is up (``preload.RAY_TUNE_LATER``, Optuna, the final phase's
and the reports' modules): ``after`` imports them when ``ray.init`` has returned, as before;
``beside`` in preload's thread while it runs. Runs alternate.

    python bench/preload_overlap.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ONE_RUN = """
import importlib, sys, time
import ray
from spp_sweep.sweep import preload, runner  # what the CLI has imported when it connects
modules = [*preload.RAY_TUNE_LATER, *preload.OPTUNA_LATER, *preload.FINAL_LATER,
           "analysis.report", "analysis.recommendation"]
start = time.perf_counter()
if sys.argv[1] == "beside":
    with preload.importing_beside(modules):
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    init = float("nan")
else:
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    init = time.perf_counter() - start
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
print(init, time.perf_counter() - start)
ray.shutdown()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"after": [], "beside": []}
    inits = []
    for _ in range(args.rounds):
        for mode in seconds:
            out = subprocess.run([sys.executable, "-c", ONE_RUN, mode], cwd=REPO, check=True, capture_output=True,
                                 text=True).stdout.split()
            seconds[mode].append(float(out[-1]))
            if mode == "after":
                inits.append(float(out[-2]))
    print(f"ray.init alone: {', '.join(f'{s:.2f}' for s in inits)} s")
    for mode, label in (("after", "ray.init, then the imports"), ("beside", "the imports beside ray.init")):
        print(f"{label}: {', '.join(f'{s:.2f}' for s in seconds[mode])} s "
              f"(median {statistics.median(seconds[mode]):.2f} s)")
    print(f"saved: {statistics.median(seconds['after']) - statistics.median(seconds['beside']):.2f} s (medians)")


if __name__ == "__main__":
    main()

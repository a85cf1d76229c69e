"""`spp-sweep recommend` before and after: the same command from several commits, alternately.

Each commit is checked out as a detached git worktree (under ``--work``) and run with its own
package first on ``PYTHONPATH`` (the installed environment, Ray, Optuna and torch, is shared;
Ray's local workers inherit the driver's environment, so they import the same tree). Rounds
alternate the commits, so a machine whose load drifts slows each alike. For every run it prints
the command's wall time, what its ``compute.csv`` sums to, the Tune experiments it ran (a
sweep's phase folders, which also shows which code ran), the recommended method and values
(``recommended.yaml``), the leader's validation ACC (``ranking.csv``) and each experiment's
seconds before its first trial started; then each commit's median and its ratio to the first
commit's.

    python bench/recommend_speed.py --commits 3bd4933^ 6299b3c HEAD            # the small case
    python bench/recommend_speed.py --case mnist --commits 6299b3c HEAD      # MNIST as an .npz
    python bench/recommend_speed.py --out recommend_speed.json ...          # the rows as JSON

``--case main`` times README's main job instead (``spp-sweep sweep studies/lambda_robustness.yaml``,
its report included): wall time, trials and the best SPP configuration's validation ACC.

``--case digits`` is README's example (``examples/make_my_digits.py``: 1300 training images of
8x8 digits, ``--tasks 5 --budget 8 --set epochs=10``). ``--case mnist`` writes real MNIST (from
``SPP_DATA_ROOT``, torchvision's files) as an ``.npz`` a user would bring and runs it with the
authors' 784-64-32 trunk, ``--tasks 5 --budget 8``, at ``--mnist-epochs`` (default 1) per task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
SWEEPS = ("search", "curve")


def worktree(commit: str, work: Path) -> tuple[str, Path]:
    """A detached worktree of ``commit`` under ``work`` (reused if there), and its short hash."""
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit], check=True,
                           capture_output=True, text=True).stdout.strip()
    tree = work / f"tree-{short}"
    if not tree.is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), short], check=True)
    return short, tree


def make_data(case: str, work: Path) -> tuple[Path, list[str]]:
    """The data file of the case and the command's arguments after it."""
    if case == "digits":
        subprocess.run([sys.executable, str(REPO / "examples" / "make_my_digits.py"), str(work)], check=True,
                       capture_output=True)
        return work / "my_digits.npz", ["--tasks", "5", "--budget", "8", "--set", "epochs=10"]
    path = work / "mnist.npz"
    if not path.exists():
        import numpy as np
        from torchvision.datasets import MNIST

        root = os.environ.get("SPP_DATA_ROOT")
        if not root:
            raise SystemExit("--case mnist needs SPP_DATA_ROOT (a folder holding torchvision's MNIST/raw files)")
        parts = {split: MNIST(root, train=split == "train", download=False) for split in ("train", "test")}
        np.savez(path, **{f"x_{split}": data.data.numpy() for split, data in parts.items()},
                 **{f"y_{split}": data.targets.numpy() for split, data in parts.items()})
    return path, ["--tasks", "5", "--budget", "8"]


def phase_start_ups(home: Path) -> dict[str, float]:
    """Per Tune experiment, the seconds from its phase's start (``phase_times.json``) to its first
    trial's start (``start_time`` in Ray Tune's experiment state): what a phase costs before
    anything trains (the Tuner's set-up, then new workers importing torch and Ray Tune)."""
    start_ups = {}
    for sweep in SWEEPS:
        times = home / sweep / "phase_times.json"
        if not times.exists():
            continue
        spans = json.loads(times.read_text())
        for phase, span in spans.items():
            states = sorted((home / sweep / phase).glob("experiment_state-*.json"))
            if not states:
                continue
            trials = json.loads(states[-1].read_text())["trial_data"]
            starts = [json.loads(runtime).get("start_time") for _, runtime in trials]
            starts = [start for start in starts if start]
            if starts:
                start_ups[f"{sweep}/{phase}"] = round(min(starts) - span[0][0], 2)
    return start_ups


def timed_command(tree: Path, arguments: list[str], storage: Path) -> float:
    """Seconds of ``spp-sweep ARGUMENTS --storage STORAGE --name bench --quiet`` run from ``tree``'s
    package, timed from outside (a failure stops the bench with the command's output)."""
    environment = {**os.environ, "PYTHONPATH": str(tree), "RAY_DEDUP_LOGS": "0"}
    command = [sys.executable, "-m", "spp_sweep", *arguments, "--storage", str(storage), "--name", "bench", "--quiet"]
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=tree)
    if finished.returncode != 0:
        raise SystemExit(f"{arguments[0]} failed in {tree}:\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}")
    return time.perf_counter() - start


def run_once(tree: Path, data: Path, arguments: list[str], storage: Path) -> dict[str, Any]:
    """One ``recommend`` from ``tree``'s package, timed from outside; what it wrote, read back."""
    wall = timed_command(tree, ["recommend", str(data), *arguments], storage)
    home = storage / "bench"
    out = home / "recommendation"
    compute = pd.read_csv(out / "compute.csv")
    own = compute[compute["sweep"] != "reference"]
    ranking = pd.read_csv(out / "ranking.csv")
    recommended = yaml.safe_load((out / "recommended.yaml").read_text())
    method, options = next(iter(recommended["methods"].items()))
    experiments = sorted(f"{sweep}/{phase.name}" for sweep in SWEEPS if (home / sweep).is_dir()
                         for phase in (home / sweep).iterdir() if phase.is_dir() and phase.name != "report")
    return {"wall_s": round(wall, 1), "compute_csv_s": round(float(own["wall_seconds"].sum()), 1),
            "experiments": experiments, "recommended": method,
            "values": {key: f"{value:.4g}" if isinstance(value, float) else value
                       for key, value in {**{k: v for k, v in recommended["fixed"].items() if k == "lr"},
                                          **options.get("options", {})}.items() if key != "penalty_step"},
            "leader": ranking.iloc[0]["method"], "leader_val_acc": ranking.iloc[0]["validation ACC"],
            "to_first_trial_s": phase_start_ups(home)}


def run_main_job(tree: Path, storage: Path) -> dict[str, Any]:
    """README's main job from ``tree``'s package, timed from outside, with what its report says."""
    wall = timed_command(tree, ["sweep", "studies/lambda_robustness.yaml"], storage)
    trials = pd.read_csv(storage / "bench" / "report" / "trials.csv")
    spp = trials[(trials["method"] == "spp") & (trials["status"] == "finished")]
    return {"wall_s": round(wall, 1), "trials": len(trials), "recommended": "best spp",
            "values": {"val_acc": round(float(spp["val_acc"].max()), 4)}, "leader": "spp",
            "leader_val_acc": round(float(spp["val_acc"].max()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", nargs="+", default=["6299b3c", "HEAD"],
                        help="commits to compare, the first is the baseline of the ratios")
    parser.add_argument("--case", choices=["digits", "mnist", "main"], default="digits")
    parser.add_argument("--mnist-epochs", type=int, default=1, help="--case mnist: epochs per task")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every commit, alternating")
    parser.add_argument("--work", type=Path, help="worktrees, data and results (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="write every run's row here as JSON")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="recommend_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    trees = [worktree(commit, work) for commit in args.commits]
    main_job = (Path("studies/lambda_robustness.yaml"), [])
    data, arguments = make_data(args.case, work) if args.case != "main" else main_job
    if args.case == "mnist":
        arguments += ["--set", f"epochs={args.mnist_epochs}", "--set",
                      "model_options={hidden: [64, 32]}"]
    what = "spp-sweep sweep" if args.case == "main" else "recommend"
    print(f"case {args.case}: {what} {data.name} {' '.join(arguments)}; {os.cpu_count()} CPUs")
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for short, tree in trees:
            out = work / f"out-{args.case}-{short}-{round_}"
            row = {"commit": short, "round": round_,
                   **(run_main_job(tree, out) if args.case == "main" else run_once(tree, data, arguments, out))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = statistics.median(r["wall_s"] for r in rows if r["commit"] == trees[0][0])
    print(f"\n| commit | wall time (s), each run | median | ratio to {trees[0][0]} | recommended | leader's val ACC |")
    print("|:--|:--|--:|--:|:--|:--|")
    for short, _ in trees:
        mine = [r for r in rows if r["commit"] == short]
        median = statistics.median(r["wall_s"] for r in mine)
        recommended = "; ".join(sorted({f"{r['recommended']} {r['values']}" for r in mine}))
        leaders = "; ".join(sorted({f"{r['leader']} {r['leader_val_acc']}" for r in mine}))
        print(f"| {short} | {', '.join(str(r['wall_s']) for r in mine)} | {median:.1f} | {base / median:.2f}x "
              f"| {recommended} | {leaders} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""The prepared GPU check: one short script, one JSON, no Ray or Optuna (the lent GPU machines
have PyTorch, not Ray). Five measurements, each recorded with what it measured:

1. ``equivalence``: a short SPP run (synthetic split tasks, 2 tasks) on the device and on the
   CPU, and the largest gap between their accuracy matrices (tolerance ``TOLERANCE``: kernels
   sum in another order on a GPU, so a test image near the boundary may flip);
2. ``stacked_mlp``: a λ grid of K stacked MLP members (K = 1, 17, 51) as members/s, against 1,
   4 and 8 separate processes sharing the device, each training its share one configuration
   at a time (what fractional-GPU Ray trials do);
3. ``vgg9``: VGG-9 images/s through the engine and through a bare PyTorch loop (ratio);
4. ``stacked_vgg9``: a λ grid of K stacked VGG-9 members (K = 1, 8, 27; grouped convolutions,
   models/batched.py) as members/s, against 1, 4 and 8 separate processes as for the MLP;
5. ``replay``: experience replay (under Adam), A-GEM and DER++ on the device and on the CPU (3
   synthetic tasks): each one's accuracy-matrix gap and seconds on both (their buffers are
   drawn by CPU generators and indexed on the device); and ER's buffer-size grid stacked on the
   device against its members alone there (speed-up, gap).

    python bench/gpu_check.py --device cuda --out gpu_check.json          # at most ~8 minutes on a GPU
    python bench/gpu_check.py --device cpu --quick --out /tmp/check.json  # the same code, seconds (a test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from spp_sweep.benchmarks import Benchmark, Task  # noqa: E402
from spp_sweep.config import RunConfig  # noqa: E402
from spp_sweep.engine import Experiment  # noqa: E402
from spp_sweep.stacked import StackedExperiment  # noqa: E402

TOLERANCE = 0.02  # largest accuracy-matrix gap, device vs CPU, counted as equal
LAMBDAS = [0.01, 0.03, 0.1, 0.3, 0.5, 1, 2, 4, 6, 8, 12, 30, 100, 300, 1000, 3000, 10000]
MEMORIES = [1, 2, 5, 10, 20, 50, 100]  # ER's stored samples per class (studies/replay_memory.yaml's grid)


def blobs(n_tasks: int, per_task: int, features: int = 64, seed: int = 0) -> Benchmark:
    """Two-class Gaussian tasks of ``features`` inputs (no dataset needed on the GPU machine)."""
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        centres = torch.randn(2, features, generator=generator) * 1.5
        y_train, y_test = torch.arange(per_task) % 2, torch.arange(per_task // 4) % 2
        x_train = centres[y_train] + torch.randn(len(y_train), features, generator=generator)
        x_test = centres[y_test] + torch.randn(len(y_test), features, generator=generator)
        tasks.append(Task(f"blobs[{t}]", x_train, y_train, x_test, y_test, classes=(2 * t, 2 * t + 1)))
    return Benchmark("blobs", tuple(tasks), input_shape=(features,))


def config(device: str, lam: float = 4.0, seed: int = 0, epochs: int = 2) -> RunConfig:
    return RunConfig(method="spp", benchmark="split_digits", epochs=epochs, lr=0.05, seed=seed, threads=1,
                     device=device, method_options={"lam": lam}, model_options={"hidden": [64, 32]})


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def equivalence(device: str, quick: bool) -> dict:
    data = blobs(2, 256 if quick else 2048)
    matrices = {}
    for where in (device, "cpu"):
        matrices[where] = Experiment(config(where), benchmark=data).run().accuracy_matrix
    gap = max(abs(a - b) for x, y in zip(matrices[device], matrices["cpu"]) for a, b in zip(x, y))
    return {"what": "SPP, 2 synthetic tasks, 2 epochs: accuracy matrix on the device vs the CPU",
            "max_abs_gap": gap, "tolerance": TOLERANCE, "equal": gap <= TOLERANCE}


def replay(device: str, quick: bool) -> dict:
    data = blobs(3, 256 if quick else 4096)
    found: dict = {"what": "ER (Adam), A-GEM, DER++ on 3 synthetic tasks, 2 epochs: device vs CPU, gap and seconds"}
    for method, settings in [("er", {"optimizer": "adam", "lr": 0.001, "lr_decay": 1.0}), ("agem", {}),
                             ("derpp", {})]:
        matrices, seconds = {}, {}
        for where in (device, "cpu"):
            run = RunConfig(**{**config(where).to_dict(), "method": method, "method_options": {}, **settings})
            sync(where)
            start = time.perf_counter()
            matrices[where] = Experiment(run, benchmark=data).run().accuracy_matrix
            sync(where)
            seconds[where] = time.perf_counter() - start
        gap = max(abs(a - b) for x, y in zip(matrices[device], matrices["cpu"]) for a, b in zip(x, y))
        found[method] = {"max_abs_gap": gap, "equal": gap <= TOLERANCE, "device_s": seconds[device],
                         "cpu_s": seconds["cpu"]}
    found["stacked_er"] = stacked_buffer_sizes(device, data, quick)
    return found


def stacked_buffer_sizes(device: str, data: Benchmark, quick: bool) -> dict:
    """ER's buffer-size x seed grid as one stack on the device against its first 3 members trained
    alone there (their time scaled to the grid), with the largest member-vs-alone accuracy gap."""
    grid = [RunConfig(**{**config(device).to_dict(), "method": "er", "seed": seed, "method_options": {"memory": m}})
            for m in MEMORIES for seed in range(1 if quick else 3)]
    sync(device)
    start = time.perf_counter()
    stacked = StackedExperiment(grid, benchmark=data).run()
    sync(device)
    stacked_s = time.perf_counter() - start
    start = time.perf_counter()
    alone = [Experiment(run, benchmark=data).run() for run in grid[:3]]
    sync(device)
    alone_s = (time.perf_counter() - start) * len(grid) / 3
    gap = max(abs(a - b) for s, r in zip(stacked, alone) for x, y in zip(s.accuracy_matrix, r.accuracy_matrix)
              for a, b in zip(x, y))
    return {"what": f"ER, {len(MEMORIES)} buffer sizes x seeds = {len(grid)} members stacked vs alone "
                    "(3 measured, scaled)", "members": len(grid), "stacked_s": stacked_s, "alone_s_scaled": alone_s,
            "speedup": alone_s / stacked_s, "max_abs_gap": gap, "equal": gap <= TOLERANCE}


def stacked_mlp(device: str, quick: bool) -> dict:
    return stacked_against_separate(device, quick, "mlp")


def stacked_vgg9(device: str, quick: bool) -> dict:
    return stacked_against_separate(device, quick, "vgg9")


# Per kind of member: the stack sizes, separate process counts and configurations per process.
SIZES = {"mlp": ([1, 17, 51], [1, 4, 8], 3), "vgg9": ([1, 8, 27], [1, 4, 8], 2)}


def member_run(kind: str, device: str, lam: float, seed: int, epochs: int, quick: bool) -> RunConfig:
    """One member of the stacked grid: the MLP's SPP configuration, or SPP on VGG-9 (the paper's
    widths on a GPU; tiny ones for the CPU dry run)."""
    if kind == "mlp":
        return config(device, lam, seed, epochs)
    options = {"channels": [4, 8, 8], "fc": 16} if quick else {}
    return RunConfig(method="spp", benchmark="visual_sequence", model="vgg9", epochs=epochs, lr=0.01, seed=seed,
                     batch_size=128, threads=1, device=device, validation=0.0, method_options={"lam": lam},
                     model_options=options)


def member_data(kind: str, quick: bool) -> Benchmark:
    if kind == "mlp":
        return blobs(5, 256 if quick else 2048)
    from vgg9_throughput import synthetic_sequence

    return synthetic_sequence(32 if quick else 1024, n_tasks=2)


def stacked_against_separate(device: str, quick: bool, kind: str) -> dict:
    data = member_data(kind, quick)
    epochs = 1 if quick or kind == "vgg9" else 5
    stack_sizes, process_counts, per_process = SIZES[kind]
    rows = {}
    for k in ([1, 3] if quick else stack_sizes):
        configs = [member_run(kind, device, LAMBDAS[i % len(LAMBDAS)], i // len(LAMBDAS), epochs, quick)
                   for i in range(k)]
        sync(device)
        start = time.perf_counter()
        StackedExperiment(configs, benchmark=data).run()
        sync(device)
        seconds = time.perf_counter() - start
        rows[f"stacked K={k}"] = {"members": k, "seconds": seconds, "members_per_s": k / seconds}
    per_process = 1 if quick else per_process
    for processes in ([1, 2] if quick else process_counts):
        root = [str(Path(__file__).resolve().parents[1])]
        code = (f"import sys; sys.path[:0] = {root!r}; import bench.gpu_check as g; "
                f"g.separate({kind!r}, {device!r}, {per_process}, {epochs}, {quick!r})")
        start = time.perf_counter()
        workers = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
        failed = sum(w.wait() != 0 for w in workers)
        seconds = time.perf_counter() - start
        rows[f"separate x{processes}"] = {"processes": processes, "configurations": processes * per_process,
                                          "seconds": seconds, "members_per_s": processes * per_process / seconds,
                                          "failed_processes": failed}
    what = ("64-32 MLP on 5 synthetic tasks" if kind == "mlp" else
            f"VGG-9{' (tiny widths)' if quick else ''} on 2 synthetic tasks of 3x32x32 images")
    return {"what": f"SPP λ grid, {what}, {epochs} epoch(s)/task; separate processes each train their "
                    "configurations one at a time (start-up included)", "rows": rows}


def separate(kind: str, device: str, count: int, epochs: int, quick: bool) -> None:
    """One process's share of the separate runs (called by :func:`stacked_against_separate`)."""
    data = member_data(kind, quick)
    for i in range(count):
        Experiment(member_run(kind, device, LAMBDAS[i % len(LAMBDAS)], 0, epochs, quick), benchmark=data).run()


def vgg9(device: str, quick: bool) -> dict:
    from engine_overhead import bare_loop
    from vgg9_throughput import synthetic_sequence

    per_task = 64 if quick else 5000
    data = synthetic_sequence(per_task)
    run = RunConfig(method="finetune", benchmark="visual_sequence", model="vgg9", epochs=1, batch_size=128,
                    device=device, threads=2, model_options={"channels": [8, 8, 8], "fc": 16} if quick else {})
    Experiment(run, benchmark=data).train_task(0)  # warm-up: kernels, allocator
    experiment = Experiment(run, benchmark=data)
    sync(device)
    start = time.perf_counter()
    for task in range(data.n_tasks):
        experiment.train_task(task)
    sync(device)
    engine = time.perf_counter() - start
    bare = bare_loop(Experiment(run, benchmark=data), penalty=False)
    sync(device)
    images = per_task * data.n_tasks
    return {"what": f"VGG-9, 5 synthetic tasks x {per_task} images of 3x32x32, 1 epoch, batch 128",
            "engine_images_per_s": images / engine, "bare_images_per_s": images / bare, "ratio_engine_over_bare":
            engine / bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the same code in seconds (tests)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but no CUDA GPU is visible; use --device cpu for a dry run")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    found = {"device": args.device, "quick": args.quick, "torch": torch.__version__,
             "python": platform.python_version(), "cpus": os.cpu_count(), "gpu": gpu}
    for name, measure in [("equivalence", equivalence), ("stacked_mlp", stacked_mlp), ("vgg9", vgg9),
                          ("stacked_vgg9", stacked_vgg9), ("replay", replay)]:
        start = time.perf_counter()
        try:
            found[name] = {**measure(args.device, args.quick), "wall_s": time.perf_counter() - start}
        except Exception as error:  # noqa: BLE001 - a failed part is recorded, the others still run
            found[name] = {"error": f"{type(error).__name__}: {error}"}
        print(f"{name}: {json.dumps(found[name])}", flush=True)
    Path(args.out).write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""VGG-9 training throughput (images/s): the engine against a bare PyTorch loop.

Synthetic tensors of the visual sequence's real shapes (5 tasks of 3x32x32 images, 10
classes each) so it needs no data; the same model, batch size and steps on both sides.
On a machine with CUDA it also times one epoch of each task on the GPU (``--device cuda``).

    python bench/vgg9_throughput.py                          # CPU, 1,024 images per task
    python bench/vgg9_throughput.py --device cuda --per-task 50000
"""

from __future__ import annotations

import argparse
import time

import torch
from engine_overhead import bare_loop  # the same plain loop as the MLP benchmark

from spp_sweep.benchmarks import Benchmark, Task
from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment


def synthetic_sequence(per_task: int, n_tasks: int = 5, seed: int = 0) -> Benchmark:
    generator = torch.Generator().manual_seed(seed)
    tasks = tuple(Task(
        name=f"synthetic[{t}]",
        x_train=torch.rand((per_task, 3, 32, 32), generator=generator),
        y_train=torch.randint(10, (per_task,), generator=generator),
        x_test=torch.rand((256, 3, 32, 32), generator=generator),
        y_test=torch.randint(10, (256,), generator=generator),
        classes=tuple(range(10 * t, 10 * t + 10)),
    ) for t in range(n_tasks))
    return Benchmark("synthetic_visual_sequence", tasks, input_shape=(3, 32, 32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=1024, help="training images per task")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = synthetic_sequence(args.per_task)
    images = args.per_task * benchmark.n_tasks
    config = RunConfig(method="finetune", benchmark="visual_sequence", model="vgg9", epochs=1,
                       batch_size=args.batch_size, device=args.device, threads=args.threads)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    print(f"VGG-9, {benchmark.n_tasks} tasks x {args.per_task} images, 1 epoch each, batch {args.batch_size}, "
          f"{args.device}" + (f", {args.threads} threads" if args.device == "cpu" else ""))
    Experiment(config, benchmark=benchmark).train_task(0)  # warm-up (kernels, allocator)
    experiment = Experiment(config, benchmark=benchmark)
    sync()
    start = time.perf_counter()
    for task in range(benchmark.n_tasks):
        experiment.train_task(task)
    sync()
    engine = time.perf_counter() - start
    bare_experiment = Experiment(config, benchmark=benchmark)
    sync()
    bare = bare_loop(bare_experiment, penalty=False)
    sync()
    print(f"engine    {engine:7.2f}s  {images / engine:8.0f} images/s")
    print(f"bare loop {bare:7.2f}s  {images / bare:8.0f} images/s   ratio engine/bare {engine / bare:.3f}")


if __name__ == "__main__":
    main()

"""Engine overhead: the engine's run against a bare PyTorch loop doing the same steps.

Prints, for fine-tuning (no penalty) and SPP (quadratic penalty from task 2), the wall time of
the engine's training and of a hand-written loop over the same tensors, model, batch size and
number of steps, and their ratio (target <= 1.15). Also prints each importance pass as a
multiple of one training epoch on the same task, for every method that has one (SPP both
ways, EWC's true and empirical Fisher, MAS); issue target: about 1 or less.

    python bench/engine_overhead.py --data-root ../shared/data          # split MNIST
    python bench/engine_overhead.py --benchmark split_digits            # no download
    PYTHONPATH=OTHER_TREE python bench/engine_overhead.py --data-root ../shared/data --engine-only  # two commits
    python bench/engine_overhead.py --benchmark permuted_mnist --data-root ../shared/data \
        --importance-only                                                 # 10-way heads: EWC's class sum
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.methods import TaskView


def bare_loop(experiment: Experiment, penalty: bool) -> float:
    """The same training as the engine, written as plainly as possible, on the same tensors."""
    config, model = experiment.config, experiment.model
    tasks = experiment.benchmark.tasks
    generator = torch.Generator().manual_seed(config.seed)
    omega = anchor = None
    start = time.perf_counter()
    for t, task in enumerate(tasks):
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        model.train()
        for epoch in range(config.epochs):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * config.lr_decay**epoch
            for index in torch.randperm(len(task.y_train), generator=generator).split(config.batch_size):
                loss = F.cross_entropy(model(task.x_train[index], t), task.y_train[index])
                if penalty and omega is not None:
                    loss = loss + 4.0 * sum((o * (p - a).square()).sum()
                                            for o, p, a in zip(omega, model.trunk.parameters(), anchor))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if penalty:  # SPP's importance pass (eqs. 2-4), written plainly
            model.eval()
            weights = [p.detach() for p in model.trunk.parameters()]
            task_omega = [torch.zeros_like(w) for w in weights]
            batches = task.x_train.split(100)
            for x in batches:
                grads = torch.autograd.grad(model.output_entropies(model(x, t)).sum(), list(model.trunk.parameters()))
                for acc, w, g in zip(task_omega, weights, grads):
                    acc += (g * w + 0.5 * w.square() * g.square()).clamp_min(0)
            task_omega = [o / len(batches) for o in task_omega]
            omega = task_omega if omega is None else [a + b for a, b in zip(omega, task_omega)]
            anchor = [p.detach().clone() for p in model.trunk.parameters()]
    return time.perf_counter() - start


IMPORTANCE_PASSES = [("spp", {"importance": "batch"}), ("spp", {"importance": "per_sample"}),
                     ("ewc", {"fisher": "true"}), ("ewc", {"fisher": "empirical"}), ("mas", {})]


def engine_training_seconds(config: RunConfig) -> tuple[float, Experiment]:
    experiment = Experiment(config)
    start = time.perf_counter()
    experiment.run()
    return time.perf_counter() - start, experiment


def train_seconds(config: RunConfig) -> float:
    """The engine's training of every task alone (no evaluation between tasks)."""
    experiment = Experiment(config)
    start = time.perf_counter()
    for task in range(experiment.benchmark.n_tasks):
        experiment.train_task(task)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="split_mnist")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--importance-only", action="store_true",
                        help="skip the engine-vs-bare-loop runs; time one epoch and the importance passes")
    parser.add_argument("--engine-only", action="store_true",
                        help="time only the engine's training of every task (Experiment.train_task, importance "
                             "passes included) for fine-tuning and SPP: one number per method, to compare two "
                             "commits (PYTHONPATH=<their tree> python bench/engine_overhead.py --engine-only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {"data_root": args.data_root} if args.data_root else {}
    base = dict(benchmark=args.benchmark, benchmark_options=options, epochs=args.epochs, threads=args.threads)
    if args.engine_only:
        import spp_sweep

        print(f"engine from {Path(spp_sweep.__file__).parent}, {args.benchmark}, {args.epochs} epochs per task, "
              f"{args.threads} threads, best of {args.repeats}")
        for method in ("finetune", "spp"):
            seconds = min(train_seconds(RunConfig(method=method, **base)) for _ in range(args.repeats))
            print(f"{method:<9} train_task over every task {seconds:7.2f}s")
        return

    print(f"benchmark {args.benchmark}, {args.epochs} epochs per task, {args.threads} threads, best of {args.repeats}")
    for method, penalty in () if args.importance_only else (("finetune", False), ("spp", True)):
        config = RunConfig(method=method, **base)
        engine = min(engine_training_seconds(config)[0] for _ in range(args.repeats))
        bare = min(bare_loop(Experiment(RunConfig(method="finetune", **base)), penalty) for _ in range(args.repeats))
        print(f"{method:<9} engine {engine:7.2f}s   bare loop {bare:7.2f}s   ratio {engine / bare:.3f}")

    epoch_config = RunConfig(method="finetune", **{**base, "epochs": 1})
    epochs = []
    for _ in range(args.repeats):
        one_epoch = Experiment(epoch_config)
        start = time.perf_counter()
        one_epoch.train_task(0)
        epochs.append(time.perf_counter() - start)
    epoch = min(epochs)
    print(f"one training epoch of task 1: {epoch:.3f}s; each importance pass on task 1 as a multiple of it:")
    # SI's importance is its path integral, accumulated during training: no pass of its own
    for method, options in IMPORTANCE_PASSES:
        experiment = Experiment(RunConfig(method=method, method_options=options, **base))
        task = experiment.benchmark.tasks[0]
        view = TaskView(0, 0, task.x_train, task.y_train)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            experiment.method.task_importance(view)
            seconds.append(time.perf_counter() - start)
        label = f"{method} " + ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"  {label:<28} {min(seconds):7.3f}s = {min(seconds) / epoch:5.2f} x one epoch")

if __name__ == "__main__":
    main()

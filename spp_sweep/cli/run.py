"""What ``spp-sweep run``, ``methods`` and ``benchmarks`` do, given parsed arguments."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import trial_files
from ..atomic_files import atomic_write
from ..benchmarks import BENCHMARKS, benchmark_option_names
from ..config import RunConfig
from ..engine import Experiment, RunResult
from ..errors import ConfigError, DataError
from ..methods import METHODS


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Turn CLI flags into a resolved :class:`RunConfig` (validates every value)."""
    method_options = dict(args.option)
    if args.lam is not None:
        method_options["lam"] = args.lam
    benchmark_options = dict(args.benchmark_option)
    accepted = benchmark_option_names(args.benchmark) if args.benchmark in BENCHMARKS else []
    for key, value in [("data_root", args.data_root), ("download", args.download or None),
                       ("n_tasks", args.n_tasks), ("max_train_per_task", args.max_train_per_task)]:
        if value is None:
            continue
        if key in accepted:
            benchmark_options[key] = value
        elif key in ("n_tasks", "max_train_per_task"):
            raise ConfigError(f"benchmark {args.benchmark!r} has no option {key}; valid options: {', '.join(accepted)}")
    model_options = dict(args.model_option)
    if args.hidden is not None:
        model_options["hidden"] = tuple(args.hidden)
    values: dict[str, Any] = {
        "method": args.method, "benchmark": args.benchmark, "method_options": method_options,
        "benchmark_options": benchmark_options, "model": args.model, "model_options": model_options,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "device": args.device,
        "threads": args.threads if args.threads is not None else (free_cores() if args.device == "cpu" else None),
        "save_importances": args.save_importances, "save_parameters": args.save_parameters,
        "drop_last": args.drop_last, "penalise_head": args.penalise_head,
    }
    if args.lr_decay is not None:
        values["lr_decay"] = args.lr_decay
    if args.momentum is not None:
        values["momentum"] = args.momentum
    if args.optimizer is not None:
        values["optimizer"] = args.optimizer
    if args.iterations is not None:
        values["iterations"] = args.iterations
    if args.output is not None:
        values["output"] = args.output
    return RunConfig.from_dict(values).resolved()


def free_cores() -> int:
    """Threads for a run that was given none: the cores this process may use, less those other
    processes keep busy (the 1-minute load average, rounded), at least 1 and at most torch's own
    default. On an idle machine that is torch's default; on a loaded one fewer threads, because
    threads that wait for a core cost more than they bring (docs/guide/one-run.md: on the 2-core
    machine at load 1.9, SPP on split digits took 11.1 s with 2 threads and 9.0 s with 1)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        busy = 0
    return max(1, min(torch.get_num_threads(), cores - busy))


def load_joint_reference(path: str | None) -> list[float] | None:
    """m_i of the paper's FWT: the last accuracy row of a joint run's result.json."""
    if path is None:
        return None
    try:
        result = json.loads(Path(path).read_text())
        row = [float(v) for v in result["accuracy_matrix"][-1]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise DataError(f"--joint-reference {path}: not a readable result.json of a joint run ({error})") from None
    return row


DIVERGED_EXIT = 3  # the run ended and result.json was written, but training diverged (docs/guide/one-run.md)
QUADRATIC_COST_TASKS = 20  # beyond this many tasks, say why a run takes long (every task is evaluated after every task)


def run_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    joint = load_joint_reference(args.joint_reference)
    out = Path(args.out or f"results/{config.method}-{config.benchmark}-seed{config.seed}")
    check_out(out, args.overwrite)
    experiment = Experiment(config, joint_accuracy=joint)
    if joint is not None and len(joint) != experiment.benchmark.n_tasks:
        raise DataError(f"--joint-reference has {len(joint)} tasks, this benchmark has {experiment.benchmark.n_tasks}")
    n_tasks = experiment.benchmark.n_tasks
    if n_tasks > QUADRATIC_COST_TASKS and not args.quiet:
        print(f"note: {n_tasks} tasks; each is evaluated after every task for the accuracy matrix, so evaluation "
              f"costs {n_tasks * (n_tasks + 1)} test passes and grows with the square of the task count",
              file=sys.stderr)
    make_out(out)
    if not args.quiet:
        print(format_config(config), flush=True)
    result = experiment.run(progress=not args.quiet)
    write_result(result, out)
    if not args.quiet:
        print(format_result(result))
    if result.status == "diverged":
        print(f"diverged at task {(result.diverged_task or 0) + 1} ({result.diverged_reason}); metrics are null",
              file=sys.stderr)
    print(f"wrote {out / trial_files.RESULT}")
    return DIVERGED_EXIT if result.status == "diverged" else 0


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that would overwrite an earlier run, or that cannot be a folder, before any work."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} already holds files (an earlier run?); pass --overwrite to replace them, "
                          "or choose another --out")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not a writable folder; choose another --out")


def make_out(out: Path) -> None:
    """Create --out (after the data loaded, before training) and prove a file can be written there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ConfigError(f"--out {out} cannot be written ({error.strerror or error}); choose another --out") \
            from None


def format_config(config: RunConfig) -> str:
    """The settings a run uses, resolved (defaults included), so its numbers can be compared."""
    def mapping(values: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"

    return "\n".join([
        f"method     {config.method} ({mapping(config.method_options)})",
        f"benchmark  {config.benchmark} ({mapping(config.benchmark_options)})",
        f"model      {config.model} ({mapping(config.model_options)})",
        f"training   {config.optimizer}, epochs/task {config.epochs}, lr {config.lr:g} "
        f"(decay {config.lr_decay:g}/epoch), batch {config.batch_size}, momentum {config.momentum:g}, "
        f"seed {config.seed}, device {config.device}"
        + (f", {config.threads} thread{'s' if config.threads != 1 else ''}" if config.threads else "")
        + (f", validation {config.validation:g}" if config.validation else ""),
    ])


def write_result(result: RunResult, out: Path) -> None:
    """result.json, accuracy_matrix.csv and any array files (trial_files), each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / trial_files.RESULT, json.dumps(result.to_json(), indent=2).encode())
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["after_task", *result.task_names])
    for number, row in enumerate(result.accuracy_matrix, start=1):  # tasks counted from 1, as in every table
        writer.writerow([number, *row])
    atomic_write(out / trial_files.ACCURACY_CSV, table.getvalue().encode())
    trial_files.write_arrays(out, result)


def format_result(result: RunResult) -> str:
    """The accuracy matrix (rows: after task j; columns: task i) and the metrics, as text."""
    n = len(result.initial_accuracy)
    lines = ["accuracy matrix P[j, i] (row j: after training task j; column i: test task i)"]
    lines.append("          " + " ".join(f"{f'T{i + 1}':>6}" for i in range(n)))
    lines.append("init    " + "  " + " ".join(f"{v:6.3f}" for v in result.initial_accuracy))
    for j, row in enumerate(result.accuracy_matrix):
        lines.append(f"after T{j + 1:<2}" + " " + " ".join(f"{v:6.3f}" for v in row))
    m = result.metrics
    fmt = lambda v: "n/a" if v != v else f"{v:+.4f}"  # noqa: E731
    lines.append(
        f"status {result.status}"
        + (f" at task {result.diverged_task + 1}" if result.diverged_task is not None else "")
        + f" | ACC {fmt(m['acc'])} | BWT {fmt(m['bwt'])} | FWT(standard) {fmt(m['fwt'])}"
        + f" | FWT(paper) {fmt(m['fwt_paper'])} | SMT {fmt(m['smt'])} | {result.seconds:.1f}s"
    )
    return "\n".join(lines)


def list_methods(verbose: bool = False) -> int:
    for name, cls in METHODS.items():
        print(f"{name:<11} {cls.summary}")
        if verbose:
            for option, spec in cls.options.items():
                print(f"{'':<13}{option}={spec.default!r}: {spec.help}")
    return 0


def list_benchmarks() -> int:
    for name, spec in BENCHMARKS.items():
        print(f"{name:<16} {spec.description}")
    return 0

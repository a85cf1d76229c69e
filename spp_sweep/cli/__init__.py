"""``spp-sweep``: argument parsing only; each command calls one function elsewhere.

Every user error (unknown method, bad value, missing data, absent GPU) ends as one line on
stderr and exit code 2, without a traceback and without writing any file.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import yaml

from .. import __version__
from ..errors import UserError
from ..trial_files import Instant

# The command's first line: compute.csv's start-up row begins here (the first command of this
# process; a later in-process call of main() begins at its own call).
_FIRST_LINE = [Instant.now()]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the problem and where to look), exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 512,256, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spp-sweep", description="Soft Parameter Pruning and its baselines: runs and sweeps.")
    parser.add_argument("--version", action="version", version=f"spp-sweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run", help="run one method on one benchmark, task after task",
        description="Train every task of a benchmark in sequence with one method; print the accuracy matrix "
        "and ACC/BWT/FWT/SMT; write result.json and accuracy_matrix.csv into --out. Exit code 0: finished; "
        "3: the run diverged (result.json written, metrics null); 2: bad input (nothing written).",
    )
    run.add_argument("--method", default="spp", help="a method from `spp-sweep methods` (default: spp)")
    run.add_argument("--benchmark", default="split_digits",
                     help="a benchmark from `spp-sweep benchmarks` (default: split_digits)")
    run.add_argument("--lam", type=float, help="the method's penalty strength λ (spp, ewc, si, mas, lwf)")
    run.add_argument("--lr", type=float, help="SGD learning rate (default: the benchmark's)")
    run.add_argument("--epochs", type=int, help="epochs per task (default: the benchmark's)")
    run.add_argument("--batch-size", type=int, help="mini-batch size (default: the benchmark's)")
    run.add_argument("--lr-decay", type=float,
                     help="learning-rate decay per epoch, restarting each task (default 0.96)")
    run.add_argument("--momentum", type=float, help="SGD momentum (default 0)")
    run.add_argument("--iterations", type=int,
                     help="mini-batches per task instead of epochs (the field's split-MNIST protocol: 2000)")
    run.add_argument("--optimizer", choices=("sgd", "adam"),  # config.OPTIMIZERS (kept light)
                     help="sgd (default; the paper's) or adam (torch's betas and eps; --lr-decay 1 keeps its lr "
                          "constant)")
    run.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout (default 0)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: the cores not kept busy by other "
                     "processes, from the load average; torch's own default on an idle machine)")
    run.add_argument("--model", help="mlp, vgg9 or resnet18 (default: the benchmark's: mlp for digits/MNIST, "
                     "vgg9 for visual_sequence/split_cifar100, resnet18 for caltech101)")
    run.add_argument("--hidden", type=_int_list, help="MLP hidden widths, e.g. 512,256")
    run.add_argument("--n-tasks", type=int, help="number of tasks of the permuted benchmarks")
    run.add_argument("--max-train-per-task", type=int, help="keep at most this many training samples per task")
    run.add_argument("--data-root", help="folder holding the datasets (default: $SPP_DATA_ROOT)")
    run.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    run.add_argument("-o", "--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                     help="a method option, e.g. -o importance=per_sample (see `spp-sweep methods -v`)")
    run.add_argument("--benchmark-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                     help="a benchmark option, e.g. --benchmark-option data_seed=1")
    run.add_argument("--model-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                     help="a model option, e.g. --model-option dropout=0")
    run.add_argument("--joint-reference", help="result.json of a joint run: its accuracies are m_i of the paper's FWT")
    run.add_argument("--save-importances", action="store_true",
                     help="also write importances.npz (per task, per parameter)")
    run.add_argument("--save-parameters", action="store_true", help="also write parameters.npz: the shared parameters "
                     "after each task and SPP's importance of them (section 4.2.5's parameter analysis)")
    run.add_argument("--output", choices=("per_task", "shared", "class_incremental"),  # config.OUTPUTS (kept light)
                     help="output layers: a head per task, one shared head of the "
                     "task's size, or one head over every class (default: the method's; sgd: shared, others: per_task)")
    run.add_argument("--drop-last", action="store_true",
                     help="train on complete mini-batches only (the authors' split-MNIST scripts)")
    run.add_argument("--penalise-head", action="store_true",
                     help="with --output shared/class_incremental, regularisers protect that output layer too "
                     "(the authors' split-MNIST SPP script; the paper penalises the trunk only)")
    run.add_argument("--out", help="output folder (default: results/METHOD-BENCHMARK-seedS); must be new or empty")
    run.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")

    methods = commands.add_parser("methods", help="list the methods", description="List the methods, one line each.")
    methods.add_argument("-v", "--verbose", action="store_true", help="also list each method's options")
    commands.add_parser("benchmarks", help="list the benchmarks", description="List the benchmarks, one line each.")
    _add_sweep(commands)
    _add_report(commands)
    _add_compare(commands)
    _add_status(commands)
    _add_recommend(commands)
    return parser


def _at_least(kind: type, minimum: float, noun: str) -> Any:
    """An argparse type: a ``kind`` (int or float) no smaller than ``minimum``."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {noun} >= {minimum}, got {text!r}")
        return value

    return parse


_positive_float = _at_least(float, 0, "a number")
_positive_int = _at_least(int, 1, "a whole number")


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a study file on Ray Tune (locally or on a cluster)",
        description="Run every trial of a study file through Ray Tune: the full sequential-task loop per trial, "
        "reported and checkpointed after each task, searched by grid or Optuna (TPE/random). Flags override the "
        "file. Ends with each method's best configuration and a report (report.md, tables, figures).",
    )
    sweep.add_argument("study", metavar="STUDY.yaml", help="a study file, e.g. studies/lambda_robustness.yaml")
    _add_ray_options(sweep)
    sweep.add_argument("--storage", help="folder or URI (s3://, gs://) for results; every node must reach it "
                       "(default: the study's storage, else results/sweeps)")
    sweep.add_argument("--name", help="the sweep's name: results go to STORAGE/NAME (default: the study's name)")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep: finished trials are "
                       "kept, unfinished ones continue from their last finished task")
    sweep.add_argument("--trust-state", action="store_true", help="with --resume: resume a sweep folder that "
                       "spp-sweep did not start under this account (its Ray Tune state is unpickled, which can "
                       "run code: only for folders you trust)")
    sweep.add_argument("--allow-code", action="store_true", help="let the study name benchmark python (an entry "
                       "point that is imported and run); refused otherwise, a study file being data")
    sweep.add_argument("--num-samples", type=_positive_int, help="trials per method for tpe/random samplers")
    sweep.add_argument("--stack", type=_stack_setting, help="grid points per trial as one batched model: auto "
                       "(default; whole groups, capped by memory), off (one configuration per trial) or N at most")
    sweep.add_argument("--seeds", type=_positive_int, help="run the search over seeds 0..N-1 (replaces the study's "
                       "seeds; grid studies)")
    sweep.add_argument("--final-seeds", type=_positive_int, help="re-run each method's best over N seeds the "
                       "search did not run (replaces the study's final.seeds; the phase must exist in the file)")
    sweep.add_argument("--data-root", help="folder holding the datasets on every node (default: $SPP_DATA_ROOT)")
    sweep.add_argument("--benchmark-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="a benchmark option added to the study's benchmark_options, e.g. max_train_per_task=10000")
    sweep.add_argument("--set", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="a run setting for every trial, added to the study's `fixed`, e.g. --set epochs=2")
    sweep.add_argument("--method-option", action="append", type=_key_value, default=[], metavar="METHOD.KEY=VALUE",
                       help="a method option added to that method's `options` in the study, e.g. spp.beta=0")
    sweep.add_argument("--no-report", action="store_true", help="do not write the report at the end")


def _stack_setting(text: str) -> str | int:
    """--stack: auto, off or a whole number >= 1 (the study's `stack`)."""
    if text in ("auto", "off"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, off or a whole number >= 1")
    return value


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    """Where and how trials run: the options `sweep` and `recommend` share."""
    parser.add_argument("--address", help="join this Ray cluster (auto, HOST:PORT or ray://HOST:10001); "
                        "default: start Ray on this machine")
    parser.add_argument("--max-concurrent", type=_positive_int, help="at most this many trials at once")
    parser.add_argument("--cpus-per-trial", type=_positive_float, help="CPUs per trial (= torch threads)")
    parser.add_argument("--gpus-per-trial", type=_positive_float, help="GPU share per trial, e.g. 0.25 (4 per GPU)")
    parser.add_argument("--quiet", action="store_true",
                        help="print the summary only: no Ray Tune tables or boxes, no INFO lines")
    parser.add_argument("--tensorboard", action="store_true",
                        help="say where TensorBoard finds the sweep (event files are written in every trial folder)")
    parser.add_argument("--mlflow", metavar="URI", help="also log every trial to MLflow at this tracking URI, e.g. "
                        "sqlite:///data/mlflow.db or http://host:5000 (pip install 'spp-sweep[mlflow]')")
    parser.add_argument("--wandb", metavar="PROJECT", help="also log every trial to this Weights & Biases project "
                        "(pip install 'spp-sweep[wandb]'; WANDB_MODE=offline keeps runs on disk)")


def _add_compare(commands: Any) -> None:
    compare = commands.add_parser(
        "compare", help="one method across several sweeps (an ablation), each against its fine-tuning",
        description="For each LABEL=SWEEP_DIR: the method's configuration selected on --metric, its test ACC and "
        "BWT, fine-tuning's in the same sweep (same settings and learning rate) and the seed-paired difference. "
        "Prints a Markdown table; --out also writes it as CSV.",
    )
    compare.add_argument("sweeps", nargs="+", metavar="LABEL=SWEEP_DIR", type=_label_folder,
                         help="a variant's name and its sweep folder, e.g. trunk_only=results/sweeps/x")
    compare.add_argument("--method", default="spp", help="the method compared (default spp)")
    compare.add_argument("--metric", default="val_acc", help="what selects its configuration (default val_acc)")
    compare.add_argument("--out", help="also write the table to this CSV file")


def _label_folder(text: str) -> tuple[str, str]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: write LABEL=SWEEP_DIR")
    return label, folder


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="how far a sweep is (running or finished), from its folder alone",
        description="Per phase and method: configurations planned, finished, diverged, errored, under way and not "
        "started; the elapsed time and a straight-line estimate of the time left. Reads the sweep folder only.",
    )
    status.add_argument("results", metavar="SWEEP_DIR", help="the sweep folder (STORAGE/NAME), or its URI")


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="tables and figures of a finished (or running) sweep",
        description="Read a sweep folder and write report.md with the λ-robustness curve (Figure 4), the "
        "per-method best-config table (Tables 2/3) as Markdown/CSV/LaTeX, importance distributions and "
        "accuracy-matrix heatmaps, plus trials.csv/parquet.",
    )
    report.add_argument("results", metavar="RESULTS_DIR", help="the sweep folder (STORAGE/NAME) or one phase in it, "
                        "or its URI (s3://bucket/sweeps/NAME: read through a local copy)")
    report.add_argument("--out", help="output folder (default: RESULTS_DIR/report; for a URI, NAME-report here)")


def _add_recommend(commands: Any) -> None:
    recommend = commands.add_parser(
        "recommend", help="which method, λ and learning rate to use on your own data",
        description="Compare methods on your data with the same TPE budget each (strength and learning rate), "
        "selected on a validation split carved from the training data (the test set takes no part), re-run each "
        "method's best over --seeds, sweep the winner's λ around its best, pick a robust λ from the region that "
        "stays within --tolerance of the best over seeds, and write a ranked report (ties, hyperparameter "
        "importances, compute spent) and recommended.yaml. --protocol chooses what selection may see. Results go to "
        "STORAGE/NAME/{search,curve,robust,reference,recommendation}.",
    )
    recommend.add_argument("data", metavar="DATA", help="an .npz/.pt file (x_train, y_train, x_test, y_test), an "
                           "image folder (one subfolder per class), package.module:function, or a benchmark name")
    recommend.add_argument("--methods", type=lambda t: tuple(m.strip() for m in t.split(",") if m.strip()),
                           help="comma-separated methods (default: spp,ewc,si,mas,lwf,er,finetune; without er "
                                "under --no-replay)")
    recommend.add_argument("--no-replay", action="store_true",
                           help="the data may not be kept: leave out the methods that store examples (er, agem, derpp)")
    recommend.add_argument("--budget", type=_positive_int, default=12, help="TPE trials per method (default 12)")
    recommend.add_argument("--seeds", type=_positive_int, default=3, help="seeds of each method's best (default 3)")
    recommend.add_argument("--validation", type=float, default=0.2,
                           help="fraction of each task's training data held out for selection (default 0.2)")
    recommend.add_argument("--curve-points", type=_at_least(int, 0, "a whole number"), default=7,
                           help="λ values of the winner's robustness curve, 0 for none (default 7)")
    recommend.add_argument("--penalty-step", choices=["explicit", "implicit", "search"], default="explicit",
                           help="how spp/ewc/si/mas apply their penalty: explicit (in the loss, the paper's), "
                           "implicit (exact proximal step, stable at any λ) or search (TPE picks; default explicit)")
    recommend.add_argument("--protocol", choices=["end_of_training", "first_tasks", "transfer"],
                           default="end_of_training",
                           help="what selection may see: the whole stream at its end (default), the first "
                           "--first-tasks tasks only, or another benchmark (--tune-on); docs/guide/selection.md says "
                           "when to use which")
    recommend.add_argument("--first-tasks", type=_positive_int, default=2, metavar="K",
                           help="first_tasks: how many tasks selection sees (default 2; at least 2)")
    recommend.add_argument("--tune-on", metavar="OTHER", help="transfer: the benchmark to tune on (a file, an image "
                           "folder or a benchmark name) with the same number of tasks and classes per task as DATA")
    recommend.add_argument("--tune-on-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                           help="transfer: a benchmark option of OTHER, e.g. n_tasks=5")
    recommend.add_argument("--compare", action="store_true",
                           help="first_tasks/transfer: also run the end-of-training search, to measure how far the "
                           "protocol's choice is from it (costs that search)")
    recommend.add_argument("--tolerance", type=float, default=0.01,
                           help="the robust λ: centre of the region within this much validation ACC of the best, "
                           "every seed finished (default 0.01)")
    recommend.add_argument("--tasks", type=_positive_int, help="split the classes into this many tasks")
    recommend.add_argument("--groups", help="the classes of each task, e.g. 0,1;2,3;4,5")
    recommend.add_argument("--order", choices=["sequential", "random"], help="class order for --tasks")
    recommend.add_argument("--permutations", type=_positive_int,
                           help="permuted tasks instead of class splits (.npz/.pt)")
    recommend.add_argument("--image-size", type=_positive_int, help="image folders: resize to this size (default 32)")
    recommend.add_argument("--benchmark-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                           help="any other benchmark option, e.g. test_fraction=0.2 or options={n: 3} (entry points)")
    recommend.add_argument("--set", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                           help="a run setting for every trial, e.g. --set epochs=5 or --set model=vgg9")
    _add_ray_options(recommend)
    recommend.add_argument("--stack", type=_stack_setting, help="configurations per trial as one batched model, "
                           "in the TPE search (suggested a batch at a time) and the λ curve: auto (default), off or N")
    recommend.add_argument("--storage", default="results/recommend", help="results folder (default results/recommend)")
    recommend.add_argument("--name", help="results go to STORAGE/NAME (default: from DATA)")
    recommend.add_argument("--resume", action="store_true", help="continue an interrupted recommendation")
    recommend.add_argument("--trust-state", action="store_true", help="with --resume: resume a folder that "
                           "spp-sweep did not start under this account (its Ray Tune state is unpickled)")


def main(argv: Sequence[str] | None = None) -> int:
    started = _FIRST_LINE.pop() if _FIRST_LINE else Instant.now()
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        if args.command == "run":
            from .run import run_command

            return run_command(args)
        if args.command == "methods":
            from .run import list_methods

            return list_methods(verbose=args.verbose)
        if args.command == "benchmarks":
            from .run import list_benchmarks

            return list_benchmarks()
        if args.command == "sweep":
            from .commands import sweep_command

            return sweep_command(args)
        if args.command == "status":
            from .commands import status_command

            return status_command(args)
        if args.command == "compare":
            from .commands import compare_command

            return compare_command(args)
        if args.command == "report":
            from .commands import report_command

            return report_command(args)
        if args.command == "recommend":
            from .commands import recommend_command

            return recommend_command(args)
    except UserError as error:
        for line in str(error).splitlines() or [""]:  # a study file's problems: one line each
            sys.stderr.write(f"spp-sweep: error: {line}\n")
        return 2
    except KeyboardInterrupt as interrupt:
        sys.stderr.write(f"spp-sweep: interrupted{': ' + str(interrupt) if str(interrupt) else ''}\n")
        return 130
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        sys.stderr.write(f"spp-sweep: error: the disk is full{where} ({error.strerror}); what finished is kept: free "
                         "space, then run the same command again (a sweep: with --resume)\n")
        return 2
    return 2


def entry_point() -> None:
    import os

    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry_point()

"""What ``spp-sweep sweep`` and ``spp-sweep report`` do, given parsed arguments."""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .. import trial_files
from ..atomic_files import atomic_write, check_output_folder
from ..errors import ConfigError
from ..sweep.storage import local_folder
from ..sweep.study import load_study

STUDY_COPY = trial_files.STUDY

if TYPE_CHECKING:
    from ..sweep.trackers import Trackers


def sweep_command(args: argparse.Namespace) -> int:
    study = load_study(args.study)  # a bad file fails here, before Ray is imported
    from ..sweep.connection import connected
    from ..sweep.runner import SweepOptions, release_ray, run_sweep

    options = SweepOptions(
        started=getattr(args, "started", None), address=args.address, storage=args.storage, name=args.name,
        resume=args.resume,
        max_concurrent=args.max_concurrent, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial, num_samples=args.num_samples, seeds=args.seeds,
        final_seeds=args.final_seeds,
        data_root=args.data_root, stack=args.stack, trust_state=args.trust_state, allow_code=args.allow_code,
        settings=tuple(args.set), method_options=tuple(args.method_option),
        benchmark_options=tuple(args.benchmark_option),
        verbose=0 if args.quiet else 1, trackers=trackers_from(args),
    )
    if args.resume and not args.no_report:  # a resumed sweep's report folder: one this tool wrote, or refused now
        from ..sweep.runner import root_of

        folder = local_folder(root_of(study, options))
        if folder is not None:
            check_output_folder(folder / "report", "the sweep's report folder")
    owns_ray = not connected()
    outcome = run_sweep(study, options)
    if owns_ray:
        release_ray(outcome.root)
    print(f"\nsweep {outcome.study.name}: phases {', '.join(outcome.phases)}")
    if local_folder(outcome.root) is None:
        print(f"results: {outcome.root} (`spp-sweep report {outcome.root}` writes its report here)")
        return 0
    print(best_summary(outcome.root, outcome.study.metric))
    print(f"results: {outcome.root}")
    if not args.no_report:
        from analysis.report import write_report

        report = write_report(outcome.root, Path(outcome.root) / "report")
        print(f"report:  {report}")
    return 0


def trackers_from(args: argparse.Namespace) -> Trackers:
    from ..sweep.trackers import Trackers

    return Trackers(tensorboard=args.tensorboard, mlflow=args.mlflow, wandb=args.wandb, quiet=bool(args.quiet))


def best_summary(root: str, metric: str) -> str:
    """Each method's best configuration (final phase when there is one) as printable lines."""
    from ..results.load import load_trials
    from ..results.tables import best_configs, higher_is_better

    trials = load_trials(root)
    if (trials["phase"] == trial_files.FINAL_PHASE).any():
        trials = trials[trials["phase"] == trial_files.FINAL_PHASE]
    best = best_configs(trials, metric=metric)
    loss = not higher_is_better(trials)
    lines = [f"best configuration per method (by mean {metric} over seeds, " + (
        "lower is better: a negative ELBO; a diverged seed ranks last):" if loss else "diverged seeds count as -1):")]
    for _, row in best.iterrows():
        value = lambda name, row=row: "n/a" if math.isnan(row[f"{name}_mean"]) else \
            f"{row[f'{name}_mean']:.4f}±{row[f'{name}_std']:.4f}"  # noqa: E731
        lines.append(f"  {row['method']:<11} {row['config'] or '(nothing searched)':<28} ACC {value('acc')}  "
                     f"BWT {value('bwt')}  seeds {row['n_seeds']}  diverged {row['n_diverged']}")
    return "\n".join(lines)


def report_command(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    if local_folder(args.results) is None:  # a sweep on object storage: its files are read through a local copy
        out = Path(args.out or f"{args.results.rstrip('/').rsplit('/', 1)[-1]}-report")
        check_output_folder(out, "--out")
        with tempfile.TemporaryDirectory(prefix="spp-sweep-report-") as copy:
            root = fetch_sweep(args.results, Path(copy))
            report = write_report(root, out, plan=_older_plan(root))
        print(f"report: {report}")
        return 0
    root = Path(args.results)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the sweep folder (STORAGE/NAME) or a phase inside it")
    out = Path(args.out) if args.out else root / "report"
    check_output_folder(out, "--out", keep=(root,))
    report = write_report(root, out, plan=_older_plan(root))
    print(f"report: {report}")
    return 0


def _older_plan(root: Path) -> dict | None:
    """For a sweep started before sweeps wrote ``plan.json``: the plan of the study it saved (None
    where the folder has its plan, which the analysis reads itself, or no readable study)."""
    if trial_files.read_plan(root) is not None or not (root / STUDY_COPY).exists():
        return None
    try:
        return load_study(root / STUDY_COPY).plan()
    except Exception:  # a study file of another version: the report goes on without a plan
        return None


def fetch_sweep(uri: str, into: Path) -> Path:
    """A sweep folder on object storage (s3://, gs://; pyarrow's filesystems, as Ray Tune
    writes it) copied into ``into``: what the report needs, nothing of it run."""
    import pyarrow.fs

    try:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(uri)
        if filesystem.get_file_info(inner).type == pyarrow.fs.FileType.NotFound:
            raise ConfigError(f"{uri} does not exist; give the sweep's URI (STORAGE/NAME)")
        target = into / inner.rstrip("/").rsplit("/", 1)[-1]
        pyarrow.fs.copy_files(inner, str(target), source_filesystem=filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    except (OSError, ValueError, pyarrow.lib.ArrowException) as error:
        raise ConfigError(f"{uri} cannot be read ({' '.join(str(error).split())[:300]}); check the URI and the "
                          "storage credentials (e.g. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID)") from None
    return target


def recommend_command(args: argparse.Namespace) -> int:
    from ..recommend import DEFAULT_METHODS, REPLAY_METHODS, RecommendOptions, recommend

    benchmark_options = dict(args.benchmark_option)
    for key, value in [("n_tasks", args.tasks), ("groups", args.groups), ("order", args.order),
                       ("permutations", args.permutations), ("image_size", args.image_size)]:
        if value is not None:
            benchmark_options[key] = value
    options = RecommendOptions(
        data=args.data, budget=args.budget, store_examples=not args.no_replay,
        methods=(tuple(m for m in DEFAULT_METHODS if not (args.no_replay and m in REPLAY_METHODS))
                 if args.methods is None else args.methods),
        seeds=args.seeds,
        validation=args.validation, curve_points=args.curve_points, penalty_step=args.penalty_step,
        benchmark_options=tuple(benchmark_options.items()), settings=tuple(args.set), storage=args.storage,
        name=args.name, resume=args.resume, trust_state=args.trust_state, address=args.address,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, verbose=0 if args.quiet else 1,
        trackers=trackers_from(args), protocol=args.protocol, first_tasks=args.first_tasks, tune_on=args.tune_on,
        tune_on_options=tuple(args.tune_on_option), compare=args.compare, tolerance=args.tolerance,
        stack=args.stack if args.stack is not None else "auto", started=getattr(args, "started", None),
    )
    report = recommend(options)
    print(f"\n{report.read_text().split(chr(10) + '## Ranking')[0].strip()}")
    print(f"\nrecommendation: {report}")
    print(f"config:         {report.parent / 'recommended.yaml'}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from analysis.claims import compare_sweeps

    for _, folder in args.sweeps:
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder} is not a folder; give each variant as LABEL=SWEEP_DIR")
    if args.out:
        check_table_file(Path(args.out), "--out", COMPARE_HEADER)
    table = compare_sweeps(args.sweeps, method=args.method, metric=args.metric)
    if args.out:
        atomic_write(Path(args.out), table.to_csv(index=False).encode())
    print(table.to_markdown(index=False))
    return 0


COMPARE_HEADER = "variant,"  # how every table `compare` writes begins (analysis.claims.compare_sweeps)


def check_table_file(path: Path, flag: str, header: str) -> None:
    """A CSV output is new, or a table of the same kind this tool wrote (its header): anything
    else is refused before work, since writing it would replace the user's file."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a CSV file name")
    if not path.parent.expanduser().is_dir():
        raise ConfigError(f"{flag} {path}: {path.parent} is not a folder; give a path under a folder")
    if path.exists():
        try:
            with path.open("rb") as file:
                first = file.read(len(header)).decode(errors="replace")
        except OSError as error:
            raise ConfigError(f"{flag} {path} cannot be read ({error.strerror}); give a new file name") from None
        if first != header:
            raise ConfigError(f"{flag} {path} is a file spp-sweep did not write (not a `compare` table), which "
                              "writing would replace; give a new file name")


def status_command(args: argparse.Namespace) -> int:
    from ..sweep.status import status_text

    if local_folder(args.results) is None:
        with tempfile.TemporaryDirectory(prefix="spp-sweep-status-") as copy:
            print(status_text(fetch_sweep(args.results, Path(copy))))
        return 0
    root = Path(args.results)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the sweep folder (STORAGE/NAME)")
    print(status_text(root))
    return 0

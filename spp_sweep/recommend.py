"""``spp-sweep recommend DATA``: which method, strength and learning rate for a new benchmark.

Selection never sees the test set: every task holds out a seeded validation part of its
training data (``--validation``), and every choice below is made on validation ACC. Test
metrics are reported beside it, for the chosen configurations only as a reader would.

What selection may look at is the ``--protocol`` (study.PROTOCOLS): the whole stream at its
end (``end_of_training``), the first ``--first-tasks`` tasks only (``first_tasks``), or another
benchmark of the same scenario shape (``transfer --tune-on OTHER``). Sweeps under
``STORAGE/NAME/``, then the recommendation:

* ``search/``: each method searched by TPE over its strength and learning rate with the same
  trial budget (``--budget``), then each method's best configuration re-run over ``--seeds``
  (phase ``final``): the ranking, on the data the protocol lets selection see; under
  first_tasks/transfer also phase ``evaluate``: the same configurations on DATA's whole stream;
* ``curve/``: the winner's strength on a log grid around its best value (at its best
  learning rate), ``--seeds`` each, on the selection data: its λ-robustness curve and the
  robust choice (analysis.selection.robust_choice);
* ``robust/`` (first_tasks/transfer, when the robust value is not the searched one): the robust
  choice on DATA's whole stream; ``reference/`` (``--compare``): the end-of-training search, to
  measure how far the protocol's choice is from it;
* ``recommendation/``: recommendation.md, ranking.{md,csv}, ties, hyperparameter importances,
  compute spent, the curve (PNG, PDF) and ``recommended.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import trial_files
from .atomic_files import check_output_folder
from .benchmarks import BENCHMARKS
from .errors import ConfigError, UserError
from .methods import METHODS
from .sweep.study import PROTOCOLS, RUN_KEYS, Study, name_problem, parse_study
from .sweep.trackers import Trackers
from .trial_files import Instant

# replay (er) is considered unless the user forbids keeping examples (--no-replay)
DEFAULT_METHODS = ("spp", "ewc", "si", "mas", "lwf", "er", "finetune")
REPLAY_METHODS = tuple(name for name, method in METHODS.items() if method.stores_examples)
# Search ranges of each method's strength: wide, on a log scale (the λ study shows where
# each one stops working on the embedded benchmark); the learning rate spans 0.001-0.3.
STRENGTH_RANGES = {"spp": (0.01, 100.0), "ewc": (0.1, 1e4), "si": (0.01, 100.0), "mas": (0.01, 100.0),
                   "lwf": (0.01, 10.0)}
LR_RANGE = (1e-3, 0.3)
PENALTY_STEPS = ("explicit", "implicit", "search")  # --penalty-step: fixed, or searched by TPE beside λ and lr
CURVE_DECADES = 2.0  # the robustness curve spans the best strength / 100 .. x 100
NOT_CONTINUAL = ("joint",)  # an upper bound to compare with, never a recommendation


@dataclass(frozen=True)
class RecommendOptions:
    data: str
    methods: tuple[str, ...] = DEFAULT_METHODS
    budget: int = 12
    seeds: int = 3
    validation: float = 0.2
    curve_points: int = 7
    # explicit (paper) / implicit (proximal, stable at any λ) / search (a TPE dimension) for the
    # quadratic-penalty methods (spp, ewc, si, mas); ignored by the others
    penalty_step: str = "explicit"
    # False (--no-replay): the data may not be kept, so methods that store examples are left out
    store_examples: bool = True
    benchmark_options: tuple[tuple[str, Any], ...] = ()  # groups, n_tasks, permutations, image_size...
    settings: tuple[tuple[str, Any], ...] = ()  # run settings for every trial (epochs, model...)
    storage: str = "results/recommend"
    name: str | None = None
    resume: bool = False
    trust_state: bool = False  # --trust-state: resume a folder this account did not start (provenance.py)
    address: str | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    started: Instant | None = None  # when the command began (its first line): compute.csv's start-up row starts there
    verbose: int = 1
    trackers: Trackers = Trackers()  # TensorBoard / MLflow / W&B for both sweeps
    stack: str | int = "auto"  # configurations per trial as one batched model (a study's stack:)
    protocol: str = "end_of_training"  # what selection may see (study.PROTOCOLS)
    first_tasks: int = 2  # first_tasks: the tasks selection sees
    tune_on: str | None = None  # transfer: the benchmark to tune on (any DATA form)
    tune_on_options: tuple[tuple[str, Any], ...] = ()  # its benchmark options (n_tasks, groups...)
    compare: bool = False  # first_tasks/transfer: also run the end-of-training search, to measure the gap
    tolerance: float = 0.01  # the robust choice's region: within this much validation ACC of the best


def benchmark_for(data: str) -> tuple[str, dict[str, Any]]:
    """DATA -> (benchmark, options): a file of arrays, an image folder, an entry point, or a name."""
    path = Path(data).expanduser()
    if path.is_file():
        if path.suffix not in (".npz", ".pt"):
            raise ConfigError(f"DATA {data}: unknown file type {path.suffix!r}; give an .npz or .pt file of "
                              "x_train, y_train, x_test, y_test, or an image folder")
        return "arrays", {"path": str(path.resolve())}
    if path.is_dir():
        return "image_folder", {"path": str(path.resolve())}
    if data in BENCHMARKS:
        return data, {}
    if ":" in data and not path.suffix:
        return "python", {"entry": data}
    raise ConfigError(f"DATA {data!r} is not an .npz/.pt file, an image folder, package.module:function or a "
                      f"benchmark name ({', '.join(BENCHMARKS)}); check the path")


def search_study(options: RecommendOptions, name: str) -> Study:
    """The method comparison on the user's data, selected on validation ACC."""
    unknown = [m for m in options.methods if m not in METHODS]
    if unknown or not options.methods:
        raise ConfigError(f"--methods: unknown method {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(METHODS)}")
    if options.budget < 1 or options.seeds < 1 or options.curve_points < 0 or options.curve_points == 1:
        raise ConfigError("--budget and --seeds must be >= 1, and --curve-points 0 (no λ curve) or >= 2 (a curve "
                          "needs two points)")
    keeping = [m for m in options.methods if m in METHODS and METHODS[m].stores_examples]
    if keeping and not options.store_examples:
        raise ConfigError(f"--no-replay forbids keeping examples, and {', '.join(keeping)} store them; leave "
                          f"{'it' if len(keeping) == 1 else 'them'} out of --methods")
    if len(set(options.methods)) != len(options.methods):
        raise ConfigError(f"--methods {','.join(options.methods)} names a method twice; name each once")
    if not 0 < options.validation < 1:
        raise ConfigError(f"--validation {options.validation:g} is invalid; give a fraction in (0, 1) such as 0.2")
    if options.penalty_step not in PENALTY_STEPS:
        raise ConfigError(f"--penalty-step {options.penalty_step!r}; choose one of: {', '.join(PENALTY_STEPS)}")
    if not 0 < options.tolerance < 1:
        raise ConfigError(f"--tolerance {options.tolerance:g} is invalid; give a fraction of ACC such as 0.01")
    selection = _selection_block(options)
    benchmark, benchmark_options = benchmark_for(options.data)
    methods = {}
    for method in options.methods:
        space: dict[str, Any] = {"lr": {"loguniform": list(LR_RANGE)}}
        method_options: dict[str, Any] = {}
        if method in STRENGTH_RANGES:
            space["lam"] = {"loguniform": list(STRENGTH_RANGES[method])}
        if "penalty_step" in METHODS[method].options:
            if options.penalty_step == "search":
                space["penalty_step"] = {"choice": ["explicit", "implicit"]}
            else:
                method_options["penalty_step"] = options.penalty_step
        methods[method] = {"space": space, "options": method_options}
    data: dict[str, Any] = {
        "name": name, "description": f"spp-sweep recommend {options.data}",
        "benchmark": benchmark, "benchmark_options": {**benchmark_options, **dict(options.benchmark_options)},
        "fixed": {**dict(options.settings), "validation": options.validation},
        "methods": methods,
        "search": {"sampler": "tpe", "seed": 0, "num_samples": options.budget, "metric": "val_acc"},
        "seeds": [0], "final": {"seeds": options.seeds},
        "resources": {"cpu": options.cpus_per_trial or 1, "gpu": options.gpus_per_trial or 0},
        "storage": options.storage, "selection": selection, "stack": options.stack,
    }
    if options.max_concurrent:
        data["max_concurrent"] = options.max_concurrent
    return parse_study(data, default_name=name)


def _selection_block(options: RecommendOptions) -> dict[str, Any]:
    """The study's ``selection`` block for ``--protocol`` (checked here, before any sweep)."""
    if options.protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {options.protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    if options.protocol != "transfer" and options.tune_on is not None:
        raise ConfigError("--tune-on names the benchmark to tune on for --protocol transfer; add --protocol transfer")
    if options.protocol == "first_tasks":
        if options.first_tasks < 2:
            raise ConfigError(f"--first-tasks {options.first_tasks}: a penalty acts from the second task on, so "
                              "selection needs at least 2 tasks; give 2 or more")
        return {"protocol": "first_tasks", "tasks": options.first_tasks}
    if options.protocol == "transfer":
        if options.tune_on is None:
            raise ConfigError("--protocol transfer tunes on another benchmark; give it with --tune-on OTHER "
                              "(a file, an image folder or a benchmark name)")
        benchmark, benchmark_options = benchmark_for(options.tune_on)
        return {"protocol": "transfer", "tune_on": {"benchmark": benchmark, "benchmark_options": {
            **benchmark_options, **dict(options.tune_on_options)}}}
    return {"protocol": "end_of_training"}


def curve_study(search: Study, winner: dict[str, Any], points: int, seeds: int) -> Study | None:
    """The winner's strength on a log grid around its best value, at its best learning rate, on
    the data the protocol lets selection see (the robust choice is made from it)."""
    if "lam" not in winner["params"] or points < 2:
        return None
    best = float(winner["params"]["lam"])
    lams = sorted({float(f"{best * 10 ** e:.4g}") for e in np.linspace(-CURVE_DECADES, CURVE_DECADES, points)})
    others = {k: v for k, v in winner["params"].items() if k != "lam"}
    part = search.selection_part()
    fixed = {**part["fixed"], **{k: v for k, v in others.items() if k in RUN_KEYS}}
    options = {**_method_options(search, winner["method"]), **{k: v for k, v in others.items() if k not in RUN_KEYS}}
    data = {**search.to_dict(), "name": "curve", "fixed": fixed, "benchmark": part["benchmark"],
            "benchmark_options": part["benchmark_options"],
            "methods": {winner["method"]: {"options": options, "space": {"lam": lams}}},
            "search": {"sampler": "grid", "seed": 0, "num_samples": 1, "metric": "val_acc"},
            "seeds": seeds}
    data.pop("final", None)
    data.pop("selection", None)
    return parse_study(data, default_name="curve")


def point_study(search: Study, method: str, params: dict[str, Any], seeds: int, name: str) -> Study:
    """One configuration over ``seeds`` on the study's own data (DATA, whole stream)."""
    return parse_study({**recommended_study(search, {"method": method, "params": params, "val_acc_mean": math.nan},
                                            name, seeds),
                        "storage": search.storage, "name": name}, default_name=name)


def recommend(options: RecommendOptions) -> Path:
    """Run (or resume) every sweep of the protocol and write the recommendation; returns
    recommendation.md."""
    from analysis.selection import robust_choice, simplest_of_tied, tie_table

    from .results.load import load_trials
    from .sweep.connection import connected, disconnect
    from .sweep.runner import SweepOptions, run_sweep, sweep_root
    from .sweep.storage import local_folder

    name = options.name if options.name is not None else _default_name(options.data)
    wrong = name_problem(name)
    if wrong:
        raise ConfigError(f"--name: {wrong}")
    study = search_study(options, "search")
    home = f"{sweep_root(dataclasses.replace(study, name=name))}"
    if local_folder(home) is None:
        raise ConfigError("recommend writes its report next to the sweeps; give a local --storage folder "
                          "(every node must see it: a shared file system)")
    if Path(home).exists() and not options.resume:
        raise ConfigError(f"{home} exists; pass --resume to continue it, or --name NEW for a new recommendation")
    if options.resume and not Path(home, "search", "study.yaml").exists():
        raise ConfigError(f"--resume: no recommendation at {home}; run it without --resume first")
    for out in (Path(home, "recommendation"), Path(home, "search", "report")):  # what it replaces at the end
        check_output_folder(out, "--resume")
    reference = search_study(dataclasses.replace(options, protocol="end_of_training", tune_on=None), "reference") \
        if options.compare and study.evaluates_apart else None
    # DATA and --tune-on were typed on the command line: an entry point named there may run
    sweep_options = SweepOptions(started=options.started, address=options.address, storage=home, resume=options.resume,
                                 trust_state=options.trust_state, allow_code=True,
                                 max_concurrent=options.max_concurrent, verbose=options.verbose,
                                 trackers=options.trackers)

    owns_ray = not connected()  # Ray started here ends before the reports; a caller's stays
    ran: list[str] = []
    since = [options.started]  # where the next sweep's start-up row begins: first the command's start

    def run(sweep: Study, folder: str) -> None:
        resume = options.resume and Path(home, folder, "study.yaml").exists()
        ran.append(folder)
        run_sweep(sweep, dataclasses.replace(sweep_options, name=folder, resume=resume, started=since[0]))
        since[0] = Instant.now()

    run(study, "search")
    ranking = rank_methods(f"{home}/search")
    continual = [row for row in ranking if row["method"] not in NOT_CONTINUAL]
    if not continual:
        raise UserError(f"no continual method finished in {home}/search; see its trials' error.txt, then --resume")
    search_trials = load_trials(f"{home}/search")
    final = search_trials[search_trials["phase"] == trial_files.FINAL_PHASE]
    ties = tie_table(final, [row["method"] for row in continual])
    winner = next(row for row in continual if row["method"] == simplest_of_tied(ties))
    curve = curve_study(study, winner, options.curve_points, options.seeds)
    robust = None
    if curve is not None:
        run(curve, "curve")
        robust = robust_choice(load_trials(f"{home}/curve"), metric="val_acc", tolerance=options.tolerance)
    chosen = dict(winner["params"])
    if robust is not None:
        chosen["lam"] = robust["robust"]
        if study.evaluates_apart and not math.isclose(robust["robust"], float(winner["params"]["lam"]), rel_tol=1e-3):
            run(point_study(study, winner["method"], chosen, options.seeds, "robust"), "robust")
    if reference is not None:
        run(reference, "reference")
    reporting_since = time.monotonic()  # compute.csv's last row: Ray's stop and the reports
    if owns_ray:
        disconnect()
    from analysis.recommendation import write_recommendation
    from analysis.report import write_report

    write_report(f"{home}/search", Path(home, "search", "report"))
    recommended = recommended_study(study, {**winner, "params": chosen}, name, options.seeds)
    return write_recommendation(home, ranking, winner, recommended, selected_on="val_acc", ties=ties, robust=robust,
                                protocol=study.selection_dict(), tolerance=options.tolerance,
                                reporting_since=reporting_since)


def rank_methods(search_root: str, phase: str = trial_files.FINAL_PHASE) -> list[dict[str, Any]]:
    """Each method's best configuration in ``phase``, best validation ACC first."""
    from .results.load import load_trials
    from .results.tables import best_configs, params_of

    trials = load_trials(search_root)
    final = trials[trials["phase"] == phase]
    best = best_configs(final, metric="val_acc").sort_values("rank_value", ascending=False, kind="mergesort")
    rows = []
    for _, row in best.iterrows():
        of_method = final[final["method"] == row["method"]]
        names = [n for n in of_method["searched"].iloc[0].split(",") if n]
        params = params_of(row, names)
        steps = of_method["penalty_step"].dropna().unique() if "penalty_step" in of_method else []
        if "penalty_step" not in params and len(steps) == 1:  # fixed, not searched: still part of the choice
            params["penalty_step"] = str(steps[0])
        stored = of_method["stored_examples"].max() if "stored_examples" in of_method else math.nan
        rows.append({**{k: _plain(v) for k, v in row.items()}, "params": params,
                     "stored_examples": 0 if stored != stored else int(stored)})  # NaN: a sweep from before
    return rows


def recommended_study(search: Study, winner: dict[str, Any], name: str, seeds: int) -> dict[str, Any]:
    """A study file that re-runs the recommended configuration over ``seeds`` seeds."""
    params = winner["params"]
    return {
        "name": f"{name}_{winner['method']}",
        "description": f"recommended by spp-sweep recommend ({search.protocol.replace('_', '-')} selection on "
                       "validation ACC)",
        "benchmark": search.benchmark, "benchmark_options": dict(search.benchmark_options),
        "fixed": {**search.fixed, **{k: v for k, v in params.items() if k in RUN_KEYS}},
        "methods": {winner["method"]: {"options": {**_method_options(search, winner["method"]),
                                                   **{k: v for k, v in params.items() if k not in RUN_KEYS}}}},
        "search": {"sampler": "grid", "metric": "val_acc"},
        "seeds": seeds, "resources": {"cpu": search.cpu, "gpu": search.gpu},
    }


def _method_options(study: Study, method: str) -> dict[str, Any]:
    """The options a study fixed for ``method`` (e.g. penalty_step), to carry into follow-up studies."""
    return next((dict(m.options) for m in study.methods if m.method == method), {})


def _default_name(data: str) -> str:
    stem = Path(data).stem if (Path(data).exists() or "/" in data) else data.replace(":", "_").replace(".", "_")
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in stem) or "data"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

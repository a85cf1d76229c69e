"""Study files: what a sweep searches, parsed and validated before Ray is touched.

A study is YAML (see ``studies/`` and docs/reference/study-file.md). Validation collects *every*
problem, one line per problem naming the key, so a user fixes a file in one pass. Nothing
here imports Ray: a bad study fails in a second, before a cluster is contacted.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import trial_files
from ..benchmarks import BENCHMARKS, get_spec
from ..config import RunConfig
from ..errors import UserError
from ..methods import METHODS
from ..safe_yaml import MAX_YAML_BYTES, read_yaml

SAMPLERS = ("grid", "tpe", "random")
# val_*: the same metric on the validation split (needs fixed.validation > 0); select on these
# when the test set must stay unseen (docs/guide/your-data.md).
METRICS = ("acc", "bwt", "fwt", "smt", "val_acc", "val_bwt", "val_fwt", "val_smt")
# Searchable run settings; every other space key is a method option (lam, xi, temperature...).
RUN_KEYS = ("lr", "epochs", "batch_size", "momentum", "lr_decay", "optimizer", "iterations")
# Keys of `fixed` that the study sets elsewhere (or the trial decides from its resources).
_NOT_FIXED = ("method", "benchmark", "benchmark_options", "seed", "device", "threads", "method_options")
_TOP_KEYS = {"name", "description", "benchmark", "benchmark_options", "fixed", "methods", "search", "seeds",
             "final", "scheduler", "resources", "max_concurrent", "max_failures", "storage", "selection", "reproduces",
             "stack", "equivalence_margin"}
# What selection may look at (docs/guide/selection.md): the whole stream at its end
# (the usual, optimistic protocol), the first k tasks' streams only (Lee et al. 2024), or another
# benchmark of the same scenario shape (Cha & Cho 2024).
PROTOCOLS = ("end_of_training", "first_tasks", "transfer")


class StudyError(UserError):
    """A study file with problems; the message holds one line per problem."""


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a list of values (grid / categorical) or a continuous range."""

    kind: str  # "values" | "loguniform" | "uniform" | "int"
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def is_grid(self) -> bool:
        return self.kind == "values"

    def optuna_distribution(self) -> Any:
        """The dimension as an Optuna distribution: what the Optuna phases sample from, and what
        the hyperparameter-importance evaluators are told the space was."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "values":
            return CategoricalDistribution(list(self.values))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.kind == "loguniform")


@dataclass(frozen=True)
class MethodSearch:
    """A method's fixed options and searched dimensions."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Dimension] = field(default_factory=dict)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the (list-valued) dimensions; one empty point if none."""
        names = sorted(self.space)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.space[n].values for n in names))]


@dataclass(frozen=True)
class Study:
    """A validated study; ``to_dict`` gives back a file that loads to the same study."""

    name: str
    benchmark: str
    methods: tuple[MethodSearch, ...]
    description: str = ""
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "grid"
    sampler_seed: int = 0
    num_samples: int = 10
    metric: str = "acc"
    seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = ()
    scheduler: dict[str, Any] | None = None
    cpu: float = 1.0
    gpu: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    # Grid points trained as one batched model per trial (sweep/stack_plan.py): "auto", "off" or
    # the most members per trial.
    stack: str | int = "auto"
    storage: str = "results/sweeps"
    protocol: str = "end_of_training"  # selection.protocol, one of PROTOCOLS
    selection_tasks: int = 0  # first_tasks: how many tasks selection sees
    tune_on: dict[str, Any] | None = None  # transfer: {benchmark, benchmark_options} selection runs on
    reproduces: tuple[str, ...] = ()  # the paper's tables/figures the report puts beside ours (analysis/paper.py)
    equivalence_margin: float = 0.01  # "equivalent" only inside ±this (analysis/inference.py): 1 point of ACC
    source: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def evaluates_apart(self) -> bool:
        """Whether the chosen values are evaluated on other data than they were chosen on: the
        phase ``evaluate`` re-runs each method's best on the study's benchmark, full stream."""
        return self.protocol != "end_of_training"

    def runs_code(self) -> str | None:
        """Which entry point the study would import and call (benchmark ``python``), or None.
        The sweep driver refuses such a study unless the user passes --allow-code."""
        for where, benchmark, options in [("benchmark", self.benchmark, self.benchmark_options),
                                          ("selection.tune_on", (self.tune_on or {}).get("benchmark"),
                                           (self.tune_on or {}).get("benchmark_options") or {})]:
            if benchmark == "python":
                return f"{where} python with entry {options.get('entry')!r}"
        return None

    def searched_by_optuna(self, method: MethodSearch) -> bool:
        """Optuna searches a method when the sampler is tpe/random and its space is worth sampling.

        A space of lists only, with no more points than ``num_samples``, is run exhaustively
        on the grid instead (every point once: better than sampling it, never more trials).
        """
        if self.sampler == "grid" or not method.space:
            return False
        finite = all(d.is_grid for d in method.space.values())
        return not finite or len(method.grid_points()) > self.num_samples

    def planned_configurations(self) -> dict[tuple[str, str], int]:
        """(phase, method) -> how many configurations (one per seed) the sweep runs there:
        ``grid`` (points × seeds), ``optuna`` (each method's budget), ``final`` (and ``evaluate``)."""
        planned: dict[tuple[str, str], int] = {}
        for method in self.methods:
            if self.searched_by_optuna(method):
                planned[(trial_files.OPTUNA_PHASE, method.method)] = self.num_samples
            else:
                planned[(trial_files.GRID_PHASE, method.method)] = len(method.grid_points()) * len(self.seeds)
            for phase in trial_files.SELECTED_PHASES if self.evaluates_apart else (trial_files.FINAL_PHASE,):
                if self.final_seeds:
                    planned[(phase, method.method)] = len(self.final_seeds)
        return planned

    def plan(self) -> dict[str, Any]:
        """The study as analysis reads it (trial_files.PLAN): the planned trial count, the selection
        metric, and each searched method's space as Optuna distributions in Optuna's own JSON."""
        from optuna.distributions import distribution_to_json

        spaces = {m.method: {name: json.loads(distribution_to_json(dim.optuna_distribution()))
                             for name, dim in m.space.items()} for m in self.methods if m.space}
        return {"planned_trials": self.planned_trials(), "metric": self.metric, "spaces": spaces,
                "equivalence_margin": self.equivalence_margin}

    def planned_trials(self) -> int:
        """How many trials the whole sweep runs: grid points x seeds, each Optuna method's budget,
        and each method's best configuration over the final seeds."""
        total = 0
        for method in self.methods:
            searched = self.searched_by_optuna(method)
            total += self.num_samples if searched else len(method.grid_points()) * len(self.seeds)
        return total + len(self.methods) * len(self.final_seeds) * (2 if self.evaluates_apart else 1)

    def study_part(self) -> dict[str, Any]:
        """What every trial of the study shares (goes into each trial's config as ``study``)."""
        return {"benchmark": self.benchmark, "benchmark_options": dict(self.benchmark_options),
                "fixed": dict(self.fixed)}

    def selection_part(self) -> dict[str, Any]:
        """The shared config of the phases that choose (search, final): what the protocol lets
        selection see. ``study_part`` is the data the choice is evaluated on."""
        if self.protocol == "first_tasks":
            return {**self.study_part(), "fixed": {**self.fixed, "first_tasks": self.selection_tasks}}
        if self.protocol == "transfer" and self.tune_on is not None:
            return {**self.study_part(), "benchmark": self.tune_on["benchmark"],
                    "benchmark_options": dict(self.tune_on.get("benchmark_options", {})),
                    "fixed": {**self._evaluation_training(), **self.fixed}}
        return self.study_part()

    def _evaluation_training(self) -> dict[str, Any]:
        """The evaluation benchmark's training defaults, so a transferred learning rate was tuned
        with the epochs, batch size and model it will run with (benchmarks' own defaults differ:
        split digits trains 20 epochs of a 64-32 MLP, an .npz 10 of a 256-128 one). The model is
        pinned only where both benchmarks default to the same kind (an MLP and a CNN take
        different inputs); ``fixed`` overrides all of it."""
        evaluated, tuning = get_spec(self.benchmark), get_spec((self.tune_on or {})["benchmark"])
        pinned: dict[str, Any] = {k: v for k, v in evaluated.train_defaults.items() if k in ("epochs", "batch_size")}
        if evaluated.default_model == tuning.default_model and "model" not in self.fixed:
            pinned.update(model=evaluated.default_model, model_options={
                k: list(v) if isinstance(v, tuple) else v for k, v in evaluated.model_defaults.items()})
        return pinned

    def trial_spec(self, method: MethodSearch, point: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """One trial's own part of the config: method, seed, its options and searched values."""
        return {"method": method.method, "seed": int(seed), "options": dict(method.options), "params": dict(point)}

    def with_overrides(self, **overrides: Any) -> Study:
        """The study with CLI overrides applied (``None`` values leave the file's value)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "data_root" in values:
            values["benchmark_options"] = {**self.benchmark_options, "data_root": values.pop("data_root")}
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """The study as a plain dict in the file format, with every default written out."""
        def dimension(d: Dimension) -> Any:
            return list(d.values) if d.kind == "values" else {d.kind: [d.low, d.high]}

        return {
            "name": self.name, "description": self.description, "benchmark": self.benchmark,
            "benchmark_options": dict(self.benchmark_options), "fixed": dict(self.fixed),
            "methods": {m.method: {"options": dict(m.options),
                                   "space": {k: dimension(d) for k, d in m.space.items()}} for m in self.methods},
            "search": {"sampler": self.sampler, "seed": self.sampler_seed, "num_samples": self.num_samples,
                       "metric": self.metric},
            "seeds": list(self.seeds),
            "final": {"seeds": list(self.final_seeds)} if self.final_seeds else None,
            "scheduler": self.scheduler,
            "resources": {"cpu": self.cpu, "gpu": self.gpu},
            "max_concurrent": self.max_concurrent, "max_failures": self.max_failures, "stack": self.stack,
            "storage": self.storage,
            "selection": self.selection_dict(),
            "reproduces": list(self.reproduces),
            "equivalence_margin": self.equivalence_margin,
        }

    def selection_dict(self) -> dict[str, Any]:
        """The ``selection`` block of the file format."""
        tasks = {"tasks": self.selection_tasks} if self.protocol == "first_tasks" else {}
        return {"protocol": self.protocol, **tasks,
                **({"tune_on": dict(self.tune_on or {})} if self.protocol == "transfer" else {})}


def run_settings(study_part: Mapping[str, Any], trial: Mapping[str, Any]) -> dict[str, Any]:
    """The RunConfig dict of one trial: fixed settings, the method's options, the searched point."""
    run = {**study_part["fixed"], "method": trial["method"], "benchmark": study_part["benchmark"],
           "benchmark_options": dict(study_part["benchmark_options"]), "seed": int(trial["seed"])}
    options = dict(trial.get("options", {}))
    for key, value in trial.get("params", {}).items():
        if key in RUN_KEYS:
            run[key] = value
        else:
            options[key] = value
    run["method_options"] = options
    return run


MAX_SEEDS = 1000  # more seeds than this is a typo, not a study (and a tuple of 1e12 seeds exhausts memory)
MAX_DESCRIPTION = 2000  # characters; the description is copied into every result
MAX_SEED = 2**32 - 1  # NumPy's generators take seeds up to here (torch's more); the tables store them as int64
# configurations of one phase: grid points x seeds, or a searcher's budget. Ray Tune keeps every
# trial in the driver's memory; more is a typo (a grid of 10^10 points), not a study
MAX_CONFIGURATIONS = 10_000


def name_problem(name: Any) -> str | None:
    """Why ``name`` is not one plain folder name (what a sweep's results go under), or None.
    '..', '.', slashes or control characters would write outside STORAGE or into it directly."""
    if not isinstance(name, str) or not name:
        return f"{name!r} is empty; give a plain folder name such as my_sweep"
    # not printable: control and format characters (a right-to-left override shows another name)
    if name in (".", "..") or any(c in name for c in "/\\") or any(c.isspace() or not c.isprintable()
                                                                for c in name):
        return (f"{name!r} is not one plain folder name (no slashes, spaces, control or invisible characters, '.' "
                "or '..'); results go to STORAGE/NAME")
    if len(name.encode()) > 200:
        return f"{name[:20]!r}... is {len(name.encode())} bytes long; use at most 200"
    return None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; a :class:`StudyError` lists every problem found."""
    path = Path(path)
    try:
        text = trial_files.read_text(path, MAX_YAML_BYTES)  # a regular file of bounded size, else ValueError
        if text is None:
            raise FileNotFoundError(path)
        if "\ufffd" in text:
            raise StudyError(f"study file {path} is not UTF-8 text; save it as UTF-8")
        data = read_yaml(text)
    except FileNotFoundError:
        raise StudyError(f"study file {path} does not exist; pick one from studies/ or write one") from None
    except (OSError, ValueError, yaml.YAMLError) as error:
        message = " ".join(str(error).split())
        raise StudyError(f"study file {path} is not readable YAML: {message[:500]}") from None
    return parse_study(data, default_name=path.stem)


def parse_study(data: Any, default_name: str = "study") -> Study:
    """Validate a study mapping (as read from YAML) into a :class:`Study`."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise StudyError("the study must be a YAML mapping with at least `benchmark` and `methods`")
    for key in sorted(set(data) - _TOP_KEYS):
        problems.append(f"{key}: unknown key; valid keys: {', '.join(sorted(_TOP_KEYS))}")

    benchmark = data.get("benchmark")
    if not isinstance(benchmark, str):
        problems.append("benchmark: missing; name one from `spp-sweep benchmarks`")
    elif benchmark not in BENCHMARKS:
        problems.append(f"benchmark: unknown benchmark {benchmark!r}; choose one of: {', '.join(BENCHMARKS)}")
    benchmark_options = _mapping(data, "benchmark_options", problems)
    fixed = _mapping(data, "fixed", problems)
    for key in sorted(set(fixed) & set(_NOT_FIXED)):
        problems.append(f"fixed.{key}: set by the study itself (benchmark, methods, seeds, resources), not in fixed")

    search = _mapping(data, "search", problems)
    for key in sorted(set(search) - {"sampler", "seed", "num_samples", "metric"}):
        problems.append(f"search.{key}: unknown key; valid keys: metric, num_samples, sampler, seed")
    sampler = search.get("sampler", "grid")
    if sampler not in SAMPLERS:
        problems.append(f"search.sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    metric = search.get("metric", "acc")
    if metric not in METRICS:
        problems.append(f"search.metric: {metric!r} is not one of {', '.join(METRICS)}")
    elif metric.startswith("val_") and not _is_fraction(fixed.get("validation", 0)):
        problems.append(f"search.metric: {metric} needs a validation split; set fixed.validation to a fraction "
                        "such as 0.1 (held out of each task's training data)")
    sampler_seed = _whole(search.get("seed", 0), "search.seed", problems, minimum=0, maximum=MAX_SEED)
    num_samples = _whole(search.get("num_samples", 10), "search.num_samples", problems, minimum=1,
                         maximum=MAX_CONFIGURATIONS)

    seeds = _seeds(data.get("seeds", 1), "seeds", problems)
    final = data.get("final") or {}
    if not isinstance(final, Mapping) or set(final) - {"seeds"}:
        problems.append("final: expected a mapping with one key, seeds (a count or a list)")
        final = {}
    final_seeds = _final_seeds(final["seeds"], seeds, problems) if "seeds" in final else ()
    if sampler in ("tpe", "random") and len(seeds) > 1:
        problems.append(f"seeds: with sampler {sampler} each suggested configuration runs once (seed {seeds[0]}); "
                        "put repeats under final.seeds")

    methods = _methods(data.get("methods"), sampler, problems)
    for method in methods:  # counted before any grid is listed: a grid of 10^10 points never is
        points = math.prod(len(dim.values) for dim in method.space.values() if dim.is_grid)
        if points * len(seeds) > MAX_CONFIGURATIONS:
            problems.append(f"methods.{method.method}.space: {points:,} grid points x {len(seeds)} seed(s) are more "
                            f"than {MAX_CONFIGURATIONS:,} configurations; search fewer values (or sample the space "
                            "with search.sampler tpe)")
    resources = _mapping(data, "resources", problems)
    for key in sorted(set(resources) - {"cpu", "gpu"}):
        problems.append(f"resources.{key}: unknown key; valid keys: cpu, gpu")
    cpu = _number(resources.get("cpu", 1), "resources.cpu", problems, low=0.0, low_open=True)
    gpu = _number(resources.get("gpu", 0), "resources.gpu", problems, low=0.0)
    if isinstance(gpu, float) and gpu > 1 and not gpu.is_integer():
        problems.append(f"resources.gpu: {gpu} GPUs per trial; use a fraction up to 1 or a whole number")
    max_concurrent = data.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = _whole(max_concurrent, "max_concurrent", problems, minimum=1)
    max_failures = _whole(data.get("max_failures", 2), "max_failures", problems, minimum=0)
    stack = data.get("stack", "auto")
    stack = "off" if stack is False else stack  # YAML reads a bare `off` as false
    if stack not in ("auto", "off") and not (isinstance(stack, int) and not isinstance(stack, bool) and stack >= 1):
        problems.append(f"stack: {stack!r} is invalid; use auto (the default), off, or the most configurations "
                        "per trial (a whole number >= 1)")
    scheduler = _scheduler(data.get("scheduler"), problems)
    name = data.get("name", default_name)
    wrong = name_problem(name)
    if wrong:
        problems.append(f"name: {wrong}")
    storage = data.get("storage", "results/sweeps")
    if not isinstance(storage, str) or not storage:
        problems.append("storage: must be a folder path or a URI such as s3://bucket/sweeps")

    protocol, selection_tasks, tune_on = _selection(data.get("selection"), fixed, final_seeds, problems)
    reproduces = _reproduces(data.get("reproduces"), problems)
    margin = _number(data.get("equivalence_margin", 0.01), "equivalence_margin", problems, low=0.0, low_open=True)
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        problems.append(f"description: a text of at most {MAX_DESCRIPTION} characters (it is copied into every "
                        "result)")

    if not problems:
        study = Study(
            name=name, benchmark=str(benchmark), methods=tuple(methods), description=str(data.get("description", "")),
            benchmark_options=dict(benchmark_options), fixed=dict(fixed), sampler=sampler,
            sampler_seed=sampler_seed, num_samples=num_samples, metric=metric, seeds=seeds,
            final_seeds=final_seeds, scheduler=scheduler, cpu=cpu, gpu=gpu, max_concurrent=max_concurrent,
            max_failures=max_failures, stack=stack, storage=storage, protocol=protocol, selection_tasks=selection_tasks,
            tune_on=tune_on, reproduces=reproduces, equivalence_margin=float(margin), source=dict(data),
        )
        problems.extend(check_trials(study))
    if problems:
        raise StudyError("\n".join(problems))
    return study


MAX_CORNERS = 256  # a space with more corners is checked pair by pair (every pair of values of two keys)


def check_trials(study: Study) -> list[str]:
    """Build the RunConfig of the corners of each method's space (every grid value, a range's
    bounds) to catch bad values and combinations, on the data the choice is evaluated on and,
    under transfer, on the tuning benchmark too. A space of more than MAX_CORNERS corners is
    checked on every pair of values of any two keys, the others at their first value: the
    combination rules (RunConfig.resolved) each join two settings, so every one is met."""
    problems: list[str] = []
    parts = [study.study_part()] + ([study.selection_part()] if study.protocol == "transfer" else [])
    for method in study.methods:
        values = {key: list(dim.values) if dim.is_grid else [dim.low, dim.high] for key, dim in method.space.items()}
        if math.prod(len(v) for v in values.values()) <= MAX_CORNERS:
            names = list(values)
            corners = [dict(zip(names, combo)) for combo in itertools.product(*values.values())]
        else:
            first = {k: v[0] for k, v in values.items()}
            corners = [{**first, a: x} for a in values for x in values[a]]
            corners += [{**first, a: x, b: y} for a, b in itertools.combinations(values, 2)
                        for x in values[a][1:] for y in values[b][1:]]
        try:
            for part in parts:
                for point in corners:
                    RunConfig.from_dict(run_settings(part, study.trial_spec(method, point, 0))).resolved()
        except UserError as error:
            problems.append(f"methods.{method.method}: {error}")
    return problems


def _reproduces(value: Any, problems: list[str]) -> tuple[str, ...]:
    """``reproduces``: a name or a list of the paper's tables/figures (spp_sweep/results/paper_results.yaml)."""
    from ..results import published

    names = [] if value is None else [value] if isinstance(value, str) else value
    known = sorted(name for name in published() if name != "claims")
    if not isinstance(names, list) or any(n not in known for n in names):
        problems.append(f"reproduces: {value!r}; give one or a list of: {', '.join(known)}")
        return ()
    return tuple(names)


def _selection(value: Any, fixed: Mapping[str, Any], final_seeds: tuple[int, ...],
               problems: list[str]) -> tuple[str, int, dict[str, Any] | None]:
    """The ``selection`` block -> (protocol, tasks, tune_on), one line per problem."""
    if value is None:
        return "end_of_training", 0, None
    if not isinstance(value, Mapping) or set(value) - {"protocol", "tasks", "tune_on"}:
        problems.append("selection: expected a mapping with keys protocol, tasks (first_tasks), tune_on (transfer)")
        return "end_of_training", 0, None
    protocol = value.get("protocol", "end_of_training")
    if protocol not in PROTOCOLS:
        problems.append(f"selection.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        return "end_of_training", 0, None
    if protocol != "end_of_training" and not final_seeds:
        problems.append(f"selection.protocol: {protocol} re-runs the chosen values on the study's benchmark over "
                        "final.seeds; add final: {seeds: 3}")
    for key, wanted in (("tasks", "first_tasks"), ("tune_on", "transfer")):
        if key in value and protocol != wanted:
            problems.append(f"selection.{key}: only for protocol {wanted}")
    tasks, tune_on = 0, None
    if protocol == "first_tasks":
        # a penalty acts from the second task on: with one task its strength meets no data
        tasks = _whole(value.get("tasks", 2), "selection.tasks", problems, minimum=2)
        if fixed.get("first_tasks"):
            problems.append("fixed.first_tasks: the first_tasks protocol sets it for selection; remove it from fixed")
    if protocol == "transfer":
        tune_on = value.get("tune_on")
        if not isinstance(tune_on, Mapping) or set(tune_on) - {"benchmark", "benchmark_options"} \
                or not isinstance(tune_on.get("benchmark_options") or {}, Mapping):
            problems.append("selection.tune_on: expected {benchmark: NAME, benchmark_options: {...}}, the benchmark "
                            "to tune on")
            tune_on = None
        elif tune_on.get("benchmark") not in BENCHMARKS:
            problems.append(f"selection.tune_on.benchmark: {tune_on.get('benchmark')!r} is unknown; choose one of: "
                            f"{', '.join(BENCHMARKS)}")
            tune_on = None
        else:
            tune_on = {"benchmark": tune_on["benchmark"],
                       "benchmark_options": dict(tune_on.get("benchmark_options") or {})}
    return protocol, tasks, tune_on


# -- small validators (each appends one line per problem) --------------------------------------
def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _mapping(data: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: expected a mapping, got {type(value).__name__}")
        return {}
    return dict(value)


def _whole(value: Any, key: str, problems: list[str], minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or \
            (maximum is not None and value > maximum):
        problems.append(f"{key}: {value!r} must be a whole number >= {minimum}"
                        + (f" and <= {maximum:,}" if maximum is not None else ""))
        return minimum
    return value


def _number(value: Any, key: str, problems: list[str], low: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (low_open and value == low):
        problems.append(f"{key}: {value!r} must be a number {'>' if low_open else '>='} {low:g}")
        return 1.0
    return float(value)


def fresh_seeds(count: int, searched: tuple[int, ...]) -> tuple[int, ...]:
    """The ``count`` smallest seeds the search did not run: the final phase's seeds given as a
    count. Its runs are then new observations, each seed counted once, and not the very runs
    that chose the configuration (whose validation score selection already favoured)."""
    out: list[int] = []
    seed = 0
    while len(out) < count:
        if seed not in searched:
            out.append(seed)
        seed += 1
    return tuple(out)


def _final_seeds(value: Any, seeds: tuple[int, ...], problems: list[str]) -> tuple[int, ...]:
    """final.seeds: a count (the next seeds the search did not run) or a list disjoint from it."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEEDS:
        return fresh_seeds(value, seeds)
    final = _seeds(value, "final.seeds", problems)
    again = [s for s in final if s in seeds]
    if isinstance(value, list) and again:
        problems.append(f"final.seeds: the search already ran {', '.join(map(str, again))} (seeds: "
                        f"{', '.join(map(str, seeds))}), and a seed counts once; list seeds the search did not run, "
                        f"or give a count (final: {{seeds: {len(final)}}} runs "
                        f"{', '.join(map(str, fresh_seeds(len(final), seeds)))})")
    return final


def _seeds(value: Any, key: str, problems: list[str]) -> tuple[int, ...]:
    if (isinstance(value, int) and not isinstance(value, bool) and value > MAX_SEEDS) or \
            (isinstance(value, list) and len(value) > MAX_SEEDS):
        problems.append(f"{key}: {MAX_SEEDS} seeds at most (got {value if isinstance(value, int) else len(value)})")
        return (0,)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED
                                                 for s in value) and len(set(value)) == len(value):
        return tuple(value)
    problems.append(f"{key}: {_short(value)} must be a count >= 1 or a list of distinct whole numbers from 0 to "
                    f"{MAX_SEED:,}")
    return (0,)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dimension(value: Any, key: str, sampler: str, problems: list[str]) -> Dimension | None:
    if isinstance(value, list):
        if not value:
            problems.append(f"{key}: an empty list of values")
            return None
        return Dimension("values", tuple(value))
    if isinstance(value, Mapping) and len(value) == 1:
        (kind, bounds), = value.items()
        if kind == "choice" and isinstance(bounds, list) and bounds:
            return Dimension("values", tuple(bounds))
        if kind in ("loguniform", "uniform", "int"):
            if not (isinstance(bounds, list) and len(bounds) == 2
                    and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                    and bounds[0] < bounds[1] and (kind != "loguniform" or bounds[0] > 0)):
                positive = " and low > 0" if kind == "loguniform" else ""
                problems.append(f"{key}: {kind} needs [low, high] with low < high{positive}")
                return None
            if sampler == "grid":
                problems.append(f"{key}: a {kind} range cannot be searched by the grid sampler; "
                                "list the values, or use sampler tpe or random")
                return None
            return Dimension(kind, low=float(bounds[0]), high=float(bounds[1]))
    problems.append(f"{key}: expected a list of values or one of {{loguniform|uniform|int: [low, high]}}, "
                    f"{{choice: [...]}}; got {value!r}")
    return None


def _methods(value: Any, sampler: str, problems: list[str]) -> list[MethodSearch]:
    if isinstance(value, list):  # a bare list of method names: each with its defaults
        twice = sorted({str(name) for name in value if value.count(name) > 1})
        if twice:
            problems.append(f"methods: {', '.join(twice)} listed twice; name each method once")
        value = {name: {} for name in value if isinstance(name, str)}
    if not isinstance(value, Mapping) or not value:
        problems.append("methods: missing; a mapping of method name -> {options, space}, e.g. methods: {spp: {}}")
        return []
    methods = []
    for name, body in value.items():
        if name not in METHODS:
            problems.append(f"methods.{name}: unknown method; choose from: {', '.join(METHODS)}")
            continue
        body = body or {}
        if not isinstance(body, Mapping) or set(body) - {"options", "space"}:
            problems.append(f"methods.{name}: expected a mapping with keys options and/or space")
            continue
        options = body.get("options") or {}
        space_in = body.get("space") or {}
        if not isinstance(options, Mapping) or not isinstance(space_in, Mapping):
            problems.append(f"methods.{name}: options and space must be mappings")
            continue
        space = {}
        for key, spec in space_in.items():
            if key not in RUN_KEYS and key not in METHODS[name].options:
                valid = ", ".join([*RUN_KEYS, *METHODS[name].options])
                problems.append(f"methods.{name}.space.{key}: {name} has no setting {key!r}; searchable: {valid}")
                continue
            dim = _dimension(spec, f"methods.{name}.space.{key}", sampler, problems)
            if dim is not None and dim.is_grid and _FLOAT_SETTING.get(key, _is_float(name, key)):
                # a float setting's grid values as floats: λ is "12.0" in every phase and tracker, never "12"
                dim = Dimension("values", tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                                                for v in dim.values))
            if dim is not None:
                space[key] = dim
        methods.append(MethodSearch(name, dict(options), space))
    return methods


_FLOAT_SETTING = {"lr": True, "momentum": True, "lr_decay": True, "epochs": False, "batch_size": False,
                  "optimizer": False, "iterations": False}  # RUN_KEYS: which are numbers with a fraction


def _is_float(method: str, key: str) -> bool:
    option = METHODS[method].options.get(key)
    return option is not None and isinstance(option.default, float)


def _scheduler(value: Any, problems: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type") != "asha" or set(value) - {"type", "grace_period",
                                                                                       "reduction_factor"}:
        problems.append("scheduler: only {type: asha, grace_period: N, reduction_factor: N} is supported")
        return None
    grace = value.get("grace_period", 1)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
        problems.append(f"scheduler.grace_period: {grace!r} must be a whole number of tasks >= 1")
    factor = value.get("reduction_factor", 2)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 1:
        problems.append(f"scheduler.reduction_factor: {factor!r} must be a number > 1 (2 keeps half at each rung)")
    return dict(value)

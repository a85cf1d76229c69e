"""The run configuration shared by ``spp-sweep run`` and the sweep trainable.

A :class:`RunConfig` names a method and a benchmark plus training settings. Fields left as
``None`` take the benchmark's defaults in :meth:`RunConfig.resolved`, which also validates
every value, so a bad configuration fails before any data is loaded or file is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .benchmarks import get_spec
from .errors import ConfigError
from .methods import get_method
from .models import MODELS
from .options import Rule, resolve_options

# What an option's type cannot say (spp_sweep/options.py checks the types).
_WHOLE_POSITIVE: Rule = (lambda v: v >= 1, "a whole number >= 1")
BENCHMARK_RULES: dict[str, Rule] = {
    "data_seed": (lambda v: v >= 0, "a whole number >= 0"),
    "n_tasks": _WHOLE_POSITIVE, "classes_per_task": _WHOLE_POSITIVE, "max_train_per_task": _WHOLE_POSITIVE,
    "train_per_task": _WHOLE_POSITIVE, "test_per_task": _WHOLE_POSITIVE, "permutations": _WHOLE_POSITIVE,
    "image_size": _WHOLE_POSITIVE, "workers": (lambda v: v >= 0, "a whole number >= 0"),
    "test_fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1)"),
}
MODEL_RULES: dict[str, Rule] = {
    "hidden": (lambda v: len(v) >= 1 and min(v) >= 1, "a list of widths >= 1, e.g. [512, 256]"),
    "channels": (lambda v: len(v) >= 1 and min(v) >= 1, "a list of channel counts >= 1"),
    "fc": _WHOLE_POSITIVE, "head_hidden": _WHOLE_POSITIVE, "latent": _WHOLE_POSITIVE,
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"), "head_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "init": (lambda v: v in ("normal", "truncated_normal", "torch"),
             "normal (N(0, 0.1^2), section 4.1), truncated_normal (the authors' code: σ 0.1 cut at 2σ, biases 0.1) "
             "or torch (PyTorch's default)"),
    "dropout_layers": (lambda v: v in ("all", "last"), "all (after every hidden layer) or last (the authors' code)"),
}


# per_task: one head per task (task-incremental); shared: one head of the task's size reused by
# every task, local labels (domain-incremental); class_incremental: one head over every class,
# global labels.
OUTPUTS = ("per_task", "shared", "class_incremental")
OPTIMIZERS = ("sgd", "adam")


def _whole(value: object) -> bool:
    """A whole number, and not a boolean (YAML's ``epochs: true`` is no epoch count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RunConfig:
    """One run's settings: a method and a benchmark, the network and the training; unset fields
    (None) take the benchmark's defaults in :meth:`resolved`, which checks every value."""

    method: str = "spp"
    benchmark: str = "split_digits"
    method_options: dict[str, Any] = field(default_factory=dict)
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # None: the benchmark's default model (mlp, vgg9 or resnet18)
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    # section 4.1: "learning rate ... with decay 0.96"; applied per epoch, restarting each task
    lr_decay: float = 0.96
    momentum: float = 0.0
    # sgd (section 4.1: plain SGD, with `momentum` if set) or adam (Kingma & Ba; torch's betas and
    # eps): the field's split-MNIST protocol trains with Adam at lr 0.001 (docs/guide/methods.md)
    optimizer: str = "sgd"
    # Mini-batches per task (0: `epochs` passes over its data instead). The field's split-MNIST
    # protocol counts iterations (2000 per task): successive passes, each a fresh permutation cut
    # to complete batches; the learning rate is not decayed within them (one "epoch").
    iterations: int = 0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    eval_batch_size: int = 2048
    save_importances: bool = False
    # Save the shared parameters after every task, with SPP's label-free importance of the model
    # on that task whatever the method (section 4.2.5's parameter analysis, Figures 7b, 7c, 8).
    save_parameters: bool = False
    # Fraction of each task's training data held out for model selection (0: none); the split
    # is seeded by validation_seed alone, so every trial of a sweep validates on the same samples.
    validation: float = 0.0
    validation_seed: int = 0
    # Train and evaluate on the first `first_tasks` tasks of the stream only (0: all of them): the
    # first_tasks selection protocol tunes on this prefix (Lee et al. 2024; docs/guide/selection.md).
    # The later tasks' data take no part in such a run.
    first_tasks: int = 0
    # How tasks map to output layers (OUTPUTS); None: the method's default (sgd: shared, as the
    # authors' split-MNIST code; every other method: per_task). docs/guide/methods.md.
    output: str | None = None
    # Train on complete mini-batches only, dropping each epoch's remainder (the authors' split-MNIST
    # scripts: "Only complete batches are submitted"); False: the last, smaller batch trains too.
    drop_last: bool = False
    # With one output layer for every task (output=shared or class_incremental), regularisers
    # protect it as a shared parameter too, as the authors' split-MNIST SPP script penalises its
    # W3/b3; the paper's text penalises the trunk only (section 3.2). Refused with a head per task,
    # where every head is private to its task.
    penalise_head: bool = False

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown run setting {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(names))}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_shallow_dict(self) -> dict[str, Any]:
        """The fields as they are (no deep copy of the option dictionaries)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def resolved(self) -> ResolvedRunConfig:
        """Fill unset fields from the benchmark's defaults and check every value."""
        spec = get_spec(self.benchmark)
        method_cls = get_method(self.method)
        if self.iterations and self.epochs not in (None, 1):
            raise ConfigError(f"iterations={self.iterations} and epochs={self.epochs} both set a task's length; "
                              "give one")
        # every option in force, defaults included, each type-checked (result.json records them all)
        benchmark_options = resolve_options(spec.build, self.benchmark_options, f"benchmark {self.benchmark!r}",
                                            rules=BENCHMARK_RULES)
        model = self.model or spec.default_model
        if model not in MODELS:
            raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
        model_options = resolve_options(
            MODELS[model], {**(spec.model_defaults if model == spec.default_model else {}), **self.model_options},
            f"model {model!r}", skip=("input_shape", "head_sizes"), rules=MODEL_RULES)
        method_defaults = {
            k: v for k, v in spec.method_defaults.get(self.method, {}).items() if k in method_cls.options
        }
        output = self.output if self.output is not None else method_cls.default_output
        if output not in OUTPUTS:
            raise ConfigError(f"output={output!r} is invalid; choose one of: {', '.join(OUTPUTS)}")
        values = {
            **self.to_shallow_dict(), "output": output,
            "epochs": 1 if self.iterations else (self.epochs if self.epochs is not None
                                                 else spec.train_defaults["epochs"]),
            "batch_size": self.batch_size if self.batch_size is not None else spec.train_defaults["batch_size"],
            "lr": self.lr if self.lr is not None else spec.train_defaults["lr"],
            "method_options": method_cls.validate_options({**method_defaults, **self.method_options}),
            "benchmark_options": benchmark_options,
            "model": model,
            "model_options": model_options,
        }
        config = ResolvedRunConfig(**values)
        config._check_numbers()
        method_cls.check_training(config.method_options, momentum=config.momentum, optimizer=config.optimizer)
        from .methods import METHODS

        usable = [name for name, m in METHODS.items() if m.objectives is None or spec.objective in m.objectives]
        method_cls.check_objective(config.method_options, spec.objective, usable)
        return config

    def _check_numbers(self) -> None:
        checks = [
            ("epochs", self.epochs, lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
            ("batch_size", self.batch_size, lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
            ("lr", self.lr, lambda v: _finite(v) and v > 0, "a finite number > 0"),
            ("lr_decay", self.lr_decay, lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]"),
            ("momentum", self.momentum, lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
            ("eval_batch_size", self.eval_batch_size, lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
            ("threads", self.threads, lambda v: v is None or (_whole(v) and v >= 1), "a whole number >= 1"),
            ("seed", self.seed, lambda v: _whole(v) and 0 <= v < 2 ** 63, "a whole number in [0, 2^63)"),
            ("validation", self.validation, lambda v: _finite(v) and 0 <= v < 1, "a fraction in [0, 1)"),
            ("validation_seed", self.validation_seed, lambda v: _whole(v) and 0 <= v < 2 ** 63,
             "a whole number in [0, 2^63)"),
            ("first_tasks", self.first_tasks, lambda v: _whole(v) and v >= 0,
             "a whole number >= 0 (0: every task)"),
        ]
        for name, value, ok, wanted in checks:
            try:
                good = ok(value)
            except TypeError:
                good = False
            if not good:
                raise ConfigError(f"{name}={value!r} is invalid; it must be {wanted}")
        if not (_whole(self.iterations) and self.iterations >= 0):
            raise ConfigError(f"iterations={self.iterations!r} is invalid; it must be a whole number >= 0 (0: epochs)")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r} is invalid; choose one of: {', '.join(OPTIMIZERS)}")
        if self.optimizer == "adam" and self.momentum != 0:
            raise ConfigError(f"momentum={self.momentum:g} is SGD's; Adam keeps its own running mean of the gradient "
                              "(beta1 0.9): set momentum to 0 with optimizer=adam")
        for name in ("save_importances", "save_parameters", "drop_last", "penalise_head"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid; it must be true or false")
        if self.penalise_head and self.output == "per_task":
            raise ConfigError("penalise_head=true protects the one output layer every task shares, but output=per_task "
                              "gives each task its own head; use output=shared (or class_incremental) or "
                              "penalise_head=false")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is invalid; use cpu, cuda or cuda:N")


@dataclass(frozen=True)
class ResolvedRunConfig(RunConfig):
    """A :class:`RunConfig` after :meth:`RunConfig.resolved`: every default filled in, every value checked.

    The engine takes only this type, so a field that the benchmark fills in (``model``, ``epochs``,
    ``batch_size``, ``lr``, ``output``) is never ``None`` where training reads it. The defaults below
    exist only because a dataclass field after defaulted fields needs one; build it through
    ``resolved()``, never directly.
    """

    model: str = ""
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    output: str = ""

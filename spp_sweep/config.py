"""The run configuration shared by ``spp-sweep run`` and the sweep trainable.

A :class:`RunConfig` names a method and a benchmark plus training settings. Fields left as
``None`` take the benchmark's defaults in :meth:`RunConfig.resolved`, which also validates
every value, so a bad configuration fails before any data is loaded or file is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .benchmarks import benchmark_option_names, get_spec
from .errors import ConfigError
from .methods import get_method


@dataclass(frozen=True)
class RunConfig:
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
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    eval_batch_size: int = 2048
    save_importances: bool = False
    # Fraction of each task's training data held out for model selection (0: none); the split
    # is seeded by validation_seed alone, so every trial of a sweep validates on the same samples.
    validation: float = 0.0
    validation_seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown run setting {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(names))}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> "RunConfig":
        """Fill unset fields from the benchmark's defaults and check every value."""
        spec = get_spec(self.benchmark)
        method_cls = get_method(self.method)
        unknown = sorted(set(self.benchmark_options) - set(benchmark_option_names(self.benchmark)))
        if unknown:
            raise ConfigError(
                f"benchmark {self.benchmark!r} has no option {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(benchmark_option_names(self.benchmark))}"
            )
        method_defaults = {
            k: v for k, v in spec.method_defaults.get(self.method, {}).items() if k in method_cls.options
        }
        config = dataclasses.replace(
            self,
            epochs=self.epochs if self.epochs is not None else spec.train_defaults["epochs"],
            batch_size=self.batch_size if self.batch_size is not None else spec.train_defaults["batch_size"],
            lr=self.lr if self.lr is not None else spec.train_defaults["lr"],
            method_options=method_cls.validate_options({**method_defaults, **self.method_options}),
            model=self.model or spec.default_model,
            model_options={**(spec.model_defaults if (self.model or spec.default_model) == spec.default_model else {}),
                           **self.model_options},
        )
        config._check_numbers()
        return config

    def _check_numbers(self) -> None:
        checks = [
            ("epochs", self.epochs, lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
            ("batch_size", self.batch_size, lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
            ("lr", self.lr, lambda v: v > 0, "> 0"),
            ("lr_decay", self.lr_decay, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("momentum", self.momentum, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("eval_batch_size", self.eval_batch_size, lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
            ("threads", self.threads, lambda v: v is None or (isinstance(v, int) and v >= 1), "a whole number >= 1"),
            ("seed", self.seed, lambda v: isinstance(v, int) and v >= 0, "a whole number >= 0"),
            ("validation", self.validation, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
            ("validation_seed", self.validation_seed, lambda v: isinstance(v, int) and v >= 0, "a whole number >= 0"),
        ]
        for name, value, ok, wanted in checks:
            try:
                good = ok(value)
            except TypeError:
                good = False
            if not good:
                raise ConfigError(f"{name}={value!r} is invalid; it must be {wanted}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is invalid; use cpu, cuda or cuda:N")

"""Per-configuration summaries and each method's best configuration: the public name of
``spp_sweep.results.tables`` (which the sweep driver uses too), for analysis code and notebooks."""

from spp_sweep.results.tables import (  # noqa: F401
    DIVERGED_VALUE,
    best_configs,
    config_label,
    higher_is_better,
    one_per_seed,
    params_of,
    summarize_configs,
)

__all__ = [
    "DIVERGED_VALUE",
    "config_label",
    "higher_is_better",
    "one_per_seed",
    "summarize_configs",
    "best_configs",
    "params_of",
]

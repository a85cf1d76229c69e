"""A sweep folder as pandas tables: the public name of ``spp_sweep.results.load`` (which the
sweep driver reads too), for analysis code and notebooks."""

from spp_sweep.results.load import (  # noqa: F401
    METRIC_COLUMNS,
    STATUSES,
    VALIDATION_COLUMNS,
    add_paper_fwt,
    final_from_checkpoint,
    last_checkpoint,
    load_importances,
    load_matrices,
    load_parameters,
    load_pictures,
    load_trials,
    read_final_reports,
    read_reports,
    trial_folders,
)

__all__ = [
    "METRIC_COLUMNS",
    "VALIDATION_COLUMNS",
    "STATUSES",
    "trial_folders",
    "read_reports",
    "read_final_reports",
    "last_checkpoint",
    "load_trials",
    "final_from_checkpoint",
    "load_matrices",
    "add_paper_fwt",
    "load_importances",
    "load_pictures",
    "load_parameters",
]

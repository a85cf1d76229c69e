"""The results layer: a sweep folder's trial files as pandas tables (``load``) and each method's
best configuration (``tables``). Below both the sweep driver (which picks the final phase's
configurations and resumes from what the folder holds) and the reports in ``analysis/`` (which
read nothing else), so that neither imports the other; with the paper's published numbers, which
both check against. pandas, NumPy, PyYAML and the standard library only: no engine, no Ray."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """The SPP paper's published tables, figures and claims (``paper_results.yaml``): data the
    study parser checks ``reproduces:`` against and the reports set beside a sweep's numbers."""
    import yaml

    return yaml.safe_load(resources.files("spp_sweep.results").joinpath("paper_results.yaml").read_text())

"""The SPP paper's published numbers (``paper_results.yaml``), beside a sweep's own.

Reports show them next to ours with the difference; nothing in the project selects or tunes on
them. A study names what it reproduces with ``reproduces: table2`` (or a list: ``[table2,
figure4]``); the report then adds the comparison table, and Figure 4 shades the paper's claimed
stable λ range.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import pandas as pd

from spp_sweep.results import published

from .style import display_name

PERCENT = 100.0  # the paper prints percentages; our metrics are fractions


@lru_cache(maxsize=1)
def _published() -> dict[str, Any]:
    return published()


def paper_results() -> dict[str, dict[str, Any]]:
    """Every published table and figure, by name (table2, table3, figure4)."""
    return {name: value for name, value in _published().items() if name != "claims"}


def paper_claims() -> list[dict[str, Any]]:
    """The paper's claims as data: what each compares and which side the paper puts it on
    (graded by analysis/paper_claims.py)."""
    return list(_published()["claims"])


def figure4_band() -> tuple[float, float, str]:
    """The paper's claimed stable λ range for the Figure-4 curve, labelled with its source."""
    claim = paper_results()["figure4"]
    low, high = claim["stable"]
    return float(low), float(high), f"SPP stable for λ {low:g}–{high:g}: the paper's claim (section {claim['section']})"


def comparison_table(best: pd.DataFrame, table: str, fwt_column: str) -> pd.DataFrame:
    """Per method of the paper's ``table`` or of ``best`` (analysis.tables.best_configs rows):
    the paper's FWT/BWT/ACC, ours (mean ± std over seeds, in percent) and ACC ours − paper.

    Our FWT is shown only where it is the paper's own (eq. 7, against a joint run); the
    standard FWT measures something else and is left out (n/a) rather than compared.
    """
    published = paper_results()[table]
    ours = {row["method"]: row for _, row in best.iterrows()} if len(best) else {}
    methods = list(published["rows"]) + [m for m in ours if m not in published["rows"]]
    rows = []
    for method in methods:
        paper = dict(zip(published["columns"], published["rows"].get(method, [None] * 3)))
        mine = ours.get(method)

        def cell(metric: str, mine: Any = mine) -> str:
            if mine is None or (metric == "fwt" and fwt_column != "fwt_paper"):
                return "n/a"
            column = fwt_column if metric == "fwt" else metric
            mean, std = mine.get(f"{column}_mean", math.nan), mine.get(f"{column}_std", math.nan)
            return "n/a" if mean != mean else f"{PERCENT * mean:.2f} ± {PERCENT * (std if std == std else 0):.2f}"

        acc = mine.get("acc_mean", math.nan) if mine is not None else math.nan
        rows.append({
            "method": display_name(method), "configuration": (mine.get("config") or "-") if mine is not None else "-",
            "paper FWT": _pct(paper.get("fwt")), "ours FWT": cell("fwt"),
            "paper BWT": _pct(paper.get("bwt")), "ours BWT": cell("bwt"),
            "paper ACC": _pct(paper.get("acc")), "ours ACC": cell("acc"),
            "ACC ours − paper": "n/a" if paper.get("acc") is None or acc != acc
            else f"{PERCENT * acc - paper['acc']:+.2f}",
        })
    return pd.DataFrame(rows)


def _pct(value: float | None) -> str:
    return "/" if value is None else f"{value:.2f}"

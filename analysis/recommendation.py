"""The report of ``spp-sweep recommend``: the ranking, the winner's λ curve, the config to use.

Reads the two sweeps' result folders (``search/`` and ``curve/``), like every analysis
module, and writes ``recommendation/`` beside them, replaced whole at the end.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import figures
from .folders import replace_folder
from .load import load_trials
from .robustness import robustness_scores


def ranking_table(ranking: list[dict[str, Any]]) -> pd.DataFrame:
    """Rank, method, configuration, validation ACC (what decided), test ACC and BWT beside it."""
    def cell(row: dict[str, Any], name: str) -> str:
        mean, std = row.get(f"{name}_mean"), row.get(f"{name}_std")
        return "n/a" if mean is None or mean != mean else f"{mean:.4f} ± {(std or 0.0):.4f}"

    return pd.DataFrame([{
        "rank": index + 1, "method": row["method"], "configuration": row.get("config") or "-",
        "validation ACC": cell(row, "val_acc"), "validation BWT": cell(row, "val_bwt"),
        "test ACC": cell(row, "acc"), "test BWT": cell(row, "bwt"),
        "seeds": int(row["n_seeds"]), "diverged": int(row["n_diverged"]),
    } for index, row in enumerate(ranking)])


def write_recommendation(home: str | Path, ranking: list[dict[str, Any]], winner: dict[str, Any],
                         recommended: dict[str, Any], selected_on: str = "val_acc") -> Path:
    """Write ``home/recommendation/`` and return its recommendation.md."""
    home = Path(home)
    out = home / "recommendation"
    replace_folder(out, lambda staging: _write(home, staging, ranking, winner, recommended, selected_on))
    return out / "recommendation.md"


def _write(home: Path, out: Path, ranking: list[dict[str, Any]], winner: dict[str, Any],
           recommended: dict[str, Any], selected_on: str) -> None:
    table = ranking_table(ranking)
    table.to_csv(out / "ranking.csv", index=False)
    (out / "ranking.md").write_text(table.to_markdown(index=False) + "\n")
    (out / "recommended.yaml").write_text(
        "# The configuration spp-sweep recommend selected (on validation ACC); run it with\n"
        "#   spp-sweep sweep recommended.yaml\n" + yaml.safe_dump(recommended, sort_keys=False))
    method, params = winner["method"], winner["params"]
    lines = [f"# Recommendation for {recommended['benchmark']} "
             f"({', '.join(f'{k}={v}' for k, v in recommended['benchmark_options'].items()) or 'defaults'})", "",
             f"**Use {method}** with {_config(params)}: validation ACC {winner['val_acc_mean']:.4f} ± "
             f"{winner['val_acc_std'] or 0.0:.4f} over {winner['n_seeds']} seed{'s' * (winner['n_seeds'] != 1)} "
             f"(test ACC {_num(winner['acc_mean'])}, "
             f"test BWT {_num(winner['bwt_mean'])}).", "",
             f"Selected on {_selection(selected_on)}. Each method had the same TPE budget over its strength and "
             "learning rate; its best configuration was then re-run over the seeds below. A diverged seed counts "
             "as -1 when ranking.", "", "## Ranking", "", table.to_markdown(index=False), ""]
    curve_root = home / "curve"
    if curve_root.is_dir():
        curve = load_trials(curve_root)
        search = load_trials(home / "search")
        reference = search[(search["phase"] == "final") & search["method"].isin(["joint", "finetune"])]
        panels = [("val_acc", "validation ACC"), ("acc", "test ACC"), ("bwt", "test BWT")]
        path = figures.lambda_curve(pd.concat([curve, reference], ignore_index=True), out, panels=panels,
                                    stem="lambda_robustness")
        robust = robustness_scores(curve, metric="val_acc")
        if path is not None:
            lines += [f"## λ-robustness of {method}", "",
                      f"![λ-robustness of {method}]({path.name}) ([PDF]({path.with_suffix('.pdf').name}))", ""]
        if len(robust):
            row = robust.iloc[0]
            lines += [f"Validation ACC stays within 1 point of its best (λ = {row['best_lam']:.4g}) from "
                      f"λ = {row['stable_low']:.4g} to {row['stable_high']:.4g}: {row['decades']:.2f} decades "
                      f"of the {int(row['n_lams'])} values tried"
                      + (f"; it diverged from λ = {row['first_diverged_lam']:.4g}." if
                         row["first_diverged_lam"] == row["first_diverged_lam"] else "."), ""]
            robust.to_csv(out / "robustness.csv", index=False)
    lines += ["## Files", "", "- `recommended.yaml`: a study that re-runs the recommendation "
              "(`spp-sweep sweep recommended.yaml`)",
              "- `ranking.csv` / `ranking.md`: the table above",
              "- `../search/report/report.md`: the full report of the method comparison (every trial)", ""]
    (out / "recommendation.md").write_text("\n".join(lines))


def _selection(metric: str) -> str:
    if metric.startswith("val_"):
        return (f"validation {metric[4:].upper()} (a seeded part of each task's training data held out; the test "
                "set took no part in any choice)")
    return f"test {metric.upper()}"


def _config(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()) or \
        "its defaults"


def _num(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

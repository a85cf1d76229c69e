"""``python -m analysis.regrade FOLDER...``: a committed report's verdict tables, from its trials.csv.

The reports under ``docs/results/`` keep their tables, not their raw trial folders; their
``trials.csv`` holds every trial's numbers. This command rewrites the tables that compare
(``vs_finetune.csv``, ``versus_spp.csv``, ``figure4_claims*.csv``) from that file alone, by the
rules of :mod:`analysis.inference`, so that a verdict on a page always has its table and its
command, and a change of the rules reaches every committed result. Several folders given
together (the same benchmark, the same seeds) are pooled first: a study that added methods or
seeds beside an earlier one, run alike, compares with it seed by seed.

Where one folder's report.md shows these tables as they stand in its CSV files (a report of the
present form), each is replaced where it stands, so the page and its tables agree. Otherwise (a
report written under an earlier rule, or tables pooled from several folders) the tables go to
``verdicts.md`` beside it, and report.md gets one line pointing there. One folder also gets
``choice_stability.csv``: how often each grid's choice stands when its seeds are drawn again
(:func:`analysis.selection.choice_stability`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from spp_sweep.results.tables import best_configs, config_label, one_per_seed

from .claims import comparing_tables, report_phases
from .inference import MARGIN
from .selection import choice_stability


def pooled_trials(folders: list[Path]) -> pd.DataFrame:
    """The folders' trials.csv as one table, each (method, configuration, seed) once."""
    frames = []
    for folder in folders:
        path = folder / "trials.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trials.csv; give a report folder (docs/results/NAME)")
        frames.append(pd.read_csv(path).assign(source=folder.name))
    trials = pd.concat(frames, ignore_index=True)
    trials["searched"] = trials["searched"].astype(object).fillna("")  # a CSV reads "nothing searched" as NaN
    return one_per_seed(trials.assign(config=trials.apply(config_label, axis=1)))


def regrade(folders: list[Path], out: Path, margin: float = MARGIN) -> list[Path]:
    """Write the comparing tables of ``folders`` (pooled) into ``out``; returns the files written."""
    trials = pooled_trials(folders)
    if "higher_is_better" in trials and not trials["higher_is_better"].astype(bool).all():
        raise ValueError(f"{', '.join(f.name for f in folders)}: a loss (−ELBO), not an accuracy: its comparisons "
                         "are graded by python -m analysis.paper_claims (in nats)")
    compared, searched = report_phases(trials)
    metric = "val_acc" if "val_acc" in trials and trials["val_acc"].notna().any() else "acc"
    tables, notes = comparing_tables(compared, best_configs(compared, metric), searched, margin)
    stability = choice_stability(searched, metric) if folders == [out] else pd.DataFrame()
    beside: list[Path] = []  # how sure each grid's choice is: a file beside the report, no table of it to replace
    if len(stability):
        stability.to_csv(out / "choice_stability.csv", index=False)
        beside.append(out / "choice_stability.csv")
    if not tables:
        return beside
    report = out / "report.md"
    # the report's own tables, as it rendered them from these files, before they are rewritten
    shown = {name: _markdown(out / f"{name}.csv") for name in tables if (out / f"{name}.csv").is_file()}
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    in_place = folders == [out] and all(name in shown and shown[name] in text for name in tables)
    written = []
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        written.append(out / f"{name}.csv")
    if in_place:
        # a report of these trials under the present rules: its tables are replaced where they stand
        for name in tables:
            text = text.replace(shown[name], _markdown(out / f"{name}.csv"))
        report.write_text(text, encoding="utf-8")
        return [*written, report, *beside]
    sources = ", ".join(f.name for f in folders)
    lines = [f"# Verdicts: {sources}", "",
             f"Regraded from `trials.csv` by `python -m analysis.regrade {' '.join(str(f) for f in folders)}` "
             "under the rules of [Verdicts](../../guide/reports.md#verdicts): seeds paired and each counted "
             f"once, 95% t intervals, Holm's correction within each table, equivalence margin ±{100 * margin:.2g} "
             "point(s). These tables supersede the comparing tables of this folder's report.md where the two "
             "differ (that page was written under an earlier rule: 'tied' where p ≥ 0.05).", ""]
    if notes:
        lines += [*notes, ""]
    for path in written:
        lines += [f"## {path.stem}", "", pd.read_csv(path).to_markdown(index=False), ""]
    (out / "verdicts.md").write_text("\n".join(lines))
    written += [out / "verdicts.md", *beside]
    _point_report_at_verdicts(report)
    return written


def _markdown(table: Path) -> str:
    """A comparing table as ``spp-sweep report`` renders it into report.md (every cell as written)."""
    return pd.read_csv(table, dtype=str, keep_default_na=False).to_markdown(index=False)


POINTER = ("> The comparing tables below were worded under an earlier rule ('tied' where p ≥ 0.05); "
           "[verdicts.md](verdicts.md) regrades them with intervals, Holm's correction and equivalence margins.")


def _point_report_at_verdicts(report: Path) -> None:
    """One line under a committed report's title pointing at its regraded verdicts (once)."""
    if not report.is_file():
        return
    text = report.read_text(encoding="utf-8")
    if POINTER in text:
        return
    title, _, rest = text.partition("\n")
    report.write_text(f"{title}\n\n{POINTER}\n{rest}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.regrade", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="report folders holding trials.csv (pooled)")
    parser.add_argument("--out", type=Path, help="where to write (default: the first folder)")
    parser.add_argument("--margin", type=float, default=MARGIN, help="equivalence margin (default 0.01: 1 point)")
    args = parser.parse_args(argv)
    out = args.out or args.folders[0]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in regrade(args.folders, out, args.margin):
            print(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"regrade: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

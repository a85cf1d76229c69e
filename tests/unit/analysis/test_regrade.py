"""analysis/regrade.py: a committed report's comparing tables rewritten from its trials.csv, in
place where the report shows them as they stand, beside it (verdicts.md) otherwise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.regrade import POINTER, main, regrade


def trial_rows(method: str, lam: float | None, accs: list[float]) -> list[dict]:
    return [{"method": method, "lam": lam, "seed": seed, "acc": acc, "bwt": -0.1, "val_acc": acc,
             "status": "finished", "searched": "lam" if lam is not None else "", "phase": "grid",
             "penalty_step": "explicit" if lam is not None else None, "seconds": 1.0}
            for seed, acc in enumerate(accs)]


def report_folder(tmp_path: Path, name: str = "study") -> Path:
    """A report folder of five seeds: fine-tuning and SPP at four λ of Figure 4's band."""
    folder = tmp_path / name
    folder.mkdir()
    rows = trial_rows("finetune", None, [0.70, 0.71, 0.72, 0.70, 0.71])
    for k, lam in enumerate((0.5, 1.0, 2.0, 4.0)):
        rows += trial_rows("spp", lam, [0.80 + k / 1000, 0.81, 0.82, 0.80, 0.81])
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    return folder


def stale_claims(folder: Path) -> str:
    """Write figure4_claims.csv as an earlier rule worded it; return its markdown as a report shows it."""
    stale = pd.DataFrame({"claim (paper, Figure 4)": ["ACC is best at λ = 4"], "measured here": ["old numbers"],
                          "verdict": ["tied"]})
    stale.to_csv(folder / "figure4_claims.csv", index=False)
    return stale.astype(str).to_markdown(index=False)


def test_a_report_showing_its_tables_gets_them_replaced_where_they_stand(tmp_path: Path) -> None:
    folder = report_folder(tmp_path)
    regrade([folder], folder)  # the tables as this trials.csv gives them (no report.md: verdicts.md)
    (folder / "verdicts.md").unlink()
    old = stale_claims(folder)
    others = [pd.read_csv(folder / f, dtype=str, keep_default_na=False).to_markdown(index=False)
              for f in ("vs_finetune.csv",)]
    (folder / "report.md").write_text("# Sweep report: study\n\n" + "\n\n".join([old, *others]) + "\n\nend\n")
    written = regrade([folder], folder)
    text = (folder / "report.md").read_text()
    assert folder / "report.md" in written and not (folder / "verdicts.md").exists()
    assert "tied" not in text and POINTER not in text and text.endswith("\n\nend\n")
    claims = pd.read_csv(folder / "figure4_claims.csv", dtype=str, keep_default_na=False)
    assert claims.to_markdown(index=False) in text
    assert regrade([folder], folder) and (folder / "report.md").read_text() == text  # again: nothing moves
    stability = pd.read_csv(folder / "choice_stability.csv")  # how sure the grid's choice is, beside it
    assert list(stability["method"]) == ["spp"] and stability.loc[0, "seeds"] == 5


def test_an_earlier_report_gets_verdicts_beside_it_and_one_pointer(tmp_path: Path) -> None:
    folder = report_folder(tmp_path)
    stale_claims(folder)
    (folder / "report.md").write_text("# Sweep report: study\n\n| method | verdict |\n|---|---|\n| spp | tied |\n")
    regrade([folder], folder)
    regrade([folder], folder)
    text = (folder / "report.md").read_text()
    assert text.count(POINTER) == 1 and "| spp | tied |" in text  # the old table kept, pointed past
    verdicts = (folder / "verdicts.md").read_text()
    assert "## figure4_claims" in verdicts and "## vs_finetune" in verdicts


def test_pooled_folders_never_rewrite_one_folder_s_report(tmp_path: Path) -> None:
    """A report describes its own trials: tables pooled with another folder's go beside it."""
    first, second = report_folder(tmp_path, "first"), report_folder(tmp_path, "second")
    regrade([first], first)
    shown = pd.read_csv(first / "figure4_claims.csv", dtype=str, keep_default_na=False).to_markdown(index=False)
    (first / "report.md").write_text(f"# Sweep report: first\n\n{shown}\n")
    assert main([str(first), str(second)]) == 0
    assert (first / "verdicts.md").is_file() and POINTER in (first / "report.md").read_text()


def test_a_folder_without_trials_is_refused_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

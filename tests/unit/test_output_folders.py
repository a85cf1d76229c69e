"""No command deletes what it did not write (issue 42): an output folder is new, empty, or one this
tool marked; anything else is refused in one line before any work, with every file left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.folders import replace_folder
from spp_sweep.atomic_files import OUTPUT_MARK, check_output_folder
from spp_sweep.cli import main
from spp_sweep.errors import ConfigError


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A folder standing for a sweep: the refusals come before anything reads it."""
    root = tmp_path / "sweeps" / "mine"
    (root / "grid" / "trial_1").mkdir(parents=True)
    (root / "study.yaml").write_text("name: mine\n")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(argv: list[str], capsys: pytest.CaptureFixture, *words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    for word in words:
        assert word in err


def test_report_refuses_a_folder_of_the_users_files(sweep: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    _refused(["report", str(sweep), "--out", str(mine)], capsys, "did not write", "new or empty folder")
    assert _files(mine) == {"chapter1.tex": b"years of work"}


def test_report_refuses_the_working_folder(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    _refused(["report", str(sweep), "--out", "."], capsys, "working folder")
    _refused(["report", str(sweep), "--out", ".."], capsys, "working folder")
    assert _files(tmp_path) == before


@pytest.mark.parametrize("where", ["sweep", "storage"])
def test_report_refuses_the_sweep_it_reads_or_a_folder_above_it(where: str, sweep: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    before = _files(sweep.parent)
    out = sweep if where == "sweep" else sweep.parent
    _refused(["report", str(sweep), "--out", str(out)], capsys, "the sweep")
    assert _files(sweep.parent) == before


def test_an_unmarked_report_folder_of_a_resumed_sweep_is_refused_before_ray(sweep: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    (sweep / "report").mkdir()
    (sweep / "report" / "notes.md").write_text("mine")
    study = sweep.parent.parent / "study.yaml"
    study.write_text("name: mine\nbenchmark: split_digits\nmethods: {finetune: {}}\n")
    _refused(["sweep", str(study), "--storage", str(sweep.parent), "--resume", "--quiet"], capsys,
             "report folder", "did not write")
    assert (sweep / "report" / "notes.md").read_text() == "mine"


def test_compare_refuses_to_overwrite_a_file_it_did_not_write(sweep: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data.csv"
    data.write_text("subject,score\n1,2\n")
    _refused(["compare", f"a={sweep}", "--out", str(data)], capsys, "did not write")
    assert data.read_text() == "subject,score\n1,2\n"
    _refused(["compare", f"a={sweep}", "--out", str(tmp_path)], capsys, "is a folder")


def test_new_empty_and_marked_folders_are_replaced_whole_and_marked(tmp_path: Path) -> None:
    out = tmp_path / "new" / "report"

    def write(files: dict[str, str]):
        return lambda staging: [(staging / name).write_text(text) for name, text in files.items()]

    replace_folder(out, write({"a.md": "1", "b.csv": "2"}))
    assert (out / OUTPUT_MARK).is_file() and (out / "a.md").read_text() == "1"
    replace_folder(out, write({"a.md": "3"}))  # marked: replaced whole, b.csv gone with the old report
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARK, "a.md"])
    empty = tmp_path / "empty"
    empty.mkdir()
    replace_folder(empty, write({"a.md": "4"}))
    assert (empty / "a.md").read_text() == "4"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_a_report_that_fails_halfway_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "report"
    replace_folder(out, lambda staging: (staging / "a.md").write_text("old"))

    def fail(staging: Path) -> None:
        (staging / "a.md").write_text("half")
        raise RuntimeError("a figure failed")

    with pytest.raises(RuntimeError):
        replace_folder(out, fail)
    assert (out / "a.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_replace_folder_itself_refuses_an_unmarked_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("k")
    with pytest.raises(ConfigError, match="did not write"):
        replace_folder(tmp_path / "x", lambda staging: None)
    with pytest.raises(ConfigError, match="is a file"):
        check_output_folder(tmp_path / "x" / "keep.txt", "--out")
    assert (tmp_path / "x" / "keep.txt").read_text() == "k"


def test_every_committed_report_is_marked() -> None:
    """The reports under docs/results were written by `spp-sweep report`: rewriting them works."""
    results = Path(__file__).resolve().parents[2] / "docs" / "results"
    reports = [p.parent for p in results.glob("*/report.md")]
    assert reports and all((folder / OUTPUT_MARK).is_file() for folder in reports)

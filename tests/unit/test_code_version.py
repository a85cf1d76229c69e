"""spp_sweep/code_version.py: which code made a sweep's numbers, read from a real git checkout,
and the sweep's record of each start (a --resume under other code is added, the same code not)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from spp_sweep import code_version as versions
from spp_sweep.sweep import runner


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command (CI clones with it)")
def test_the_commit_and_uncommitted_changes_of_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "engine.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git(repo, "rev-parse", "HEAD")
    clean = versions.code_version(package)
    assert (clean["git_commit"], clean["git_dirty"]) == (head, False)
    assert versions.describe(clean) == (f"spp-sweep {clean['spp_sweep']}, git {head[:7]}, torch {clean['torch']}, "
                                        f"Python {clean['python']}")
    (package / "notes.txt").write_text("untracked")  # not part of the commit's code
    assert versions.code_version(package)["git_dirty"] is False
    (package / "engine.py").write_text("x = 2\n")
    changed = versions.code_version(package)
    assert changed["git_dirty"] is True and "with uncommitted changes" in versions.describe(changed)
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    outside = versions.code_version(elsewhere)
    assert (outside["git_commit"], outside["git_dirty"]) == (None, None)
    installed = repo / "venv" / "site-packages" / "pkg"  # inside the repository but not tracked by it
    installed.mkdir(parents=True)
    (installed / "engine.py").write_text("x = 1\n")
    assert versions.code_version(installed)["git_commit"] is None
    assert "not from a git checkout" in versions.describe(outside)


def test_a_resume_under_other_code_is_recorded_beside_the_first_start(tmp_path: Path, monkeypatch) -> None:
    first = {"spp_sweep": "0.1.0", "git_commit": "a" * 40, "git_dirty": False, "torch": "2", "python": "3"}
    (tmp_path / "plan.json").write_text(json.dumps({"planned_trials": 1, "code": [first]}))
    monkeypatch.setattr(runner, "code_version", lambda: first)
    assert runner._code_history(str(tmp_path), runner.SweepOptions(resume=True)) == [first]  # same code: once
    later = {**first, "git_commit": "b" * 40}
    monkeypatch.setattr(runner, "code_version", lambda: later)
    assert runner._code_history(str(tmp_path), runner.SweepOptions(resume=True)) == [first, later]
    assert runner._code_history(str(tmp_path), runner.SweepOptions()) == [later]  # a new sweep: its own start
    (tmp_path / "plan.json").write_text("{cut")
    assert runner._code_history(str(tmp_path), runner.SweepOptions(resume=True)) == [later]

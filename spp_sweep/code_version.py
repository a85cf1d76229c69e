"""Which code made a sweep's numbers: the package version, the git commit of the checkout it runs
from (where it runs from one), and torch's and Python's versions.

A report's numbers belong to the code that trained them: the same study and seeds give other
numbers after an engine change. The sweep driver records one entry per start in the sweep's plan
(``trial_files.PLAN``, key ``code``), so a ``--resume`` under other code is recorded beside the
first start, and the report names them.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import __version__

GIT_SECONDS = 10  # a git that does not answer in this long is treated as absent


def code_version(package: Path | None = None) -> dict[str, Any]:
    """This process's code: ``spp_sweep``, ``git_commit`` and ``git_dirty`` (None outside a git
    checkout; dirty: the package's tracked files differ from the commit), ``torch``, ``python``."""
    commit, dirty = _git(package or Path(__file__).resolve().parent)
    try:
        torch = importlib.metadata.version("torch")  # the installed version, without importing torch
    except importlib.metadata.PackageNotFoundError:
        torch = None
    return {"spp_sweep": __version__, "git_commit": commit, "git_dirty": dirty, "torch": torch,
            "python": platform.python_version()}


def describe(entry: dict[str, Any]) -> str:
    """``spp-sweep 0.1.0, git 85433c4, torch 2.14.1, Python 3.11.7`` (uncommitted changes said)."""
    commit = entry.get("git_commit")
    git = "not from a git checkout" if not commit else \
        f"git {str(commit)[:7]}{' with uncommitted changes' if entry.get('git_dirty') else ''}"
    return f"spp-sweep {entry.get('spp_sweep')}, {git}, torch {entry.get('torch')}, Python {entry.get('python')}"


def _git(folder: Path) -> tuple[str | None, bool | None]:
    """HEAD's commit of the checkout holding ``folder``, and whether ``folder``'s tracked files
    differ from it; (None, None) where there is no checkout, it does not track ``folder`` (an
    installed package inside some other repository), or there is no git. No hook or file-system
    monitor of the repository runs (``core.fsmonitor`` off)."""
    git = ["git", "-c", "core.fsmonitor=false", "-C", str(folder)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=GIT_SECONDS,
                              check=False)
        tracked = subprocess.run([*git, "ls-files", "--", "."], capture_output=True, text=True,
                                 timeout=GIT_SECONDS, check=False)
        if head.returncode != 0 or not tracked.stdout.strip():  # no checkout, or one that does not hold this code
            return None, None
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "."],
                                capture_output=True, text=True, timeout=GIT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), (bool(status.stdout.strip()) if status.returncode == 0 else None)
